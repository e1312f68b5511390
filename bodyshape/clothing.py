"""What the person wears in the photos, and the body under it.

A silhouette is the outline of the body *with* its clothes. In skin-tight clothing the two are
the same; in a T-shirt and shorts that follow the body, the cloth stands about 1 cm off the
skin, and a margin ``m`` adds ``2 pi m`` to a girth (+63 mm for 1 cm): no silhouette can tell
that from a larger body. So the person says what they wear (the page asks; ``bodyshape
reconstruct --clothing``), as ISO 8559-1 measures the body, not the garment.

For ``fitted`` clothing the reported body is moved by the *clothing allowance*, one number per
measurement, fitted on a calibration split of dressed photo pairs (its own seed, never an
evaluation split; ``bodyshape calibrate-intervals``, stored in ``intervals.json``) so that the
refitted bodies have no median error there (:func:`fit_allowance`). The mesh moves with the
numbers: the shape vector is refitted (:func:`undress`: one damped Gauss-Newton step on a
finite-difference Jacobian of the measurements, 23 extra meshes, 0.4-0.6 s on 2 cores), so the numbers
shown are still measured on the mesh shown. The allowance is what the synthetic
dressing of the calibration split adds (0.5-1.5 cm of cloth over the torso and hips, drawn
like the evaluation's dressed photos); real garments differ, which the wider interval of a
``fitted`` result has to carry.
"""

from __future__ import annotations

import numpy as np

from bodyshape.errors import BodyShapeError

#: Choice -> what the page and the CLI say. The first is the default.
CLOTHING: dict[str, str] = {
    "tight": "underwear, swimwear or skin-tight sportswear",
    "fitted": "a T-shirt and shorts that follow the body (not loose)",
}
DEFAULT_CLOTHING = next(iter(CLOTHING))
#: Finite-difference step in shape units (phenotypes 0..1, local changes -1..1).
FD_STEP = 0.05
#: Ridge weight of the refit, in (metres of measurement)^2 per (shape unit)^2: keeps the step
#: small where a measurement cannot move without large changes of the body (1e-5 let single
#: parameters move by 0.8 for the same predicted change that 1e-3 reaches with 0.2).
RIDGE = 1e-3
#: Fractions of the Gauss-Newton step tried; the best match to the allowance is kept.
STEP_SCALES = (1.0, 0.7, 0.4)


def check_clothing(clothing: str) -> str:
    if clothing not in CLOTHING:
        raise BodyShapeError(f"clothing must be one of {', '.join(CLOTHING)}, got {clothing!r}")
    return clothing


def measurement_jacobian(shape: np.ndarray, height_m: float) -> tuple[np.ndarray, np.ndarray]:
    """(measurements (M,), d measurements / d shape (M, S)) of one body at its height, metres."""
    from bodyshape.measurements import get_measurer
    from bodyshape.reconstruct import mesh_from_shape

    s = np.asarray(shape, np.float32).reshape(-1)
    # Every parameter's range ends at 1 (phenotypes 0..1, local changes -1..1): step down from
    # the top end, so the clamp never eats the step.
    step = np.where(s + FD_STEP <= 1.0, FD_STEP, -FD_STEP).astype(np.float32)
    probes = np.vstack([s, s + np.diag(step)])
    meas = get_measurer().batch(mesh_from_shape(probes, np.full(len(probes), height_m, np.float32)))
    return meas[0].astype(np.float64), ((meas[1:] - meas[0]) / step[:, None]).T.astype(np.float64)


def undress(shape: np.ndarray, height_m: float, allowance: np.ndarray) -> np.ndarray:
    """The shape vector whose measurements are those of ``shape`` minus ``allowance`` (M,),
    metres, as nearly as one regularised Gauss-Newton step gets. The measurements are only
    piecewise smooth (the waist is the smallest girth of several levels, the bust the most
    forward point) and steep near the ends of the phenotypes' ranges: a full step overshot by
    3-4x on some bodies, and further steps diverged. So the step is regularised
    (:data:`RIDGE`) and the best of :data:`STEP_SCALES` times it, by how well the measured
    change matches the allowance, is kept (each costs one more mesh). The allowance is
    calibrated through this function, so what the step leaves out is in it. Height is kept:
    the mesh is scaled to it."""
    import torch

    from bodyshape.body_model import clamp_shape
    from bodyshape.measurements import get_measurer
    from bodyshape.reconstruct import mesh_from_shape

    meas, jac = measurement_jacobian(shape, height_m)
    want = -np.asarray(allowance, np.float64)
    delta = np.linalg.solve(jac.T @ jac + RIDGE * np.eye(jac.shape[1]), jac.T @ want)
    base = torch.from_numpy(np.asarray(shape, np.float32).reshape(1, -1))
    steps = clamp_shape(base + torch.from_numpy(np.outer(STEP_SCALES, delta).astype(np.float32))).numpy()
    got = get_measurer().batch(mesh_from_shape(steps, np.full(len(steps), height_m, np.float32))) - meas
    return steps[int(np.argmin(np.linalg.norm(got - want, axis=1)))]


def undressed(shapes: np.ndarray, heights: np.ndarray, allowance: np.ndarray,
              progress: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """:func:`undress` for B bodies -> (shapes (B, S), meshes (B, V, 3), measurements (B, M)),
    the measurements taken on the refitted meshes (what is reported)."""
    from tqdm import tqdm

    from bodyshape.measurements import get_measurer
    from bodyshape.reconstruct import mesh_from_shape

    h = np.asarray(heights, np.float32).reshape(-1)
    rows = tqdm(range(len(h)), desc=progress, unit="body", disable=progress is None)
    out = np.stack([undress(shapes[i], float(h[i]), allowance) for i in rows])
    meshes = mesh_from_shape(out, h)
    return out, meshes, get_measurer().batch(meshes)


#: Rounds of the allowance's calibration (a fixed point: the refit leaves part of each
#: measurement's shift undone, so the allowance grows by the error that remains).
CALIBRATION_ROUNDS = 2


def fit_allowance(shapes: np.ndarray, heights: np.ndarray, point: np.ndarray, truth: np.ndarray,
                  rounds: int = CALIBRATION_ROUNDS) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Allowance (M,) such that the refitted bodies of dressed calibration rows have no median
    error, and those bodies' measurements (N, M), metres. ``point``: the bodies' measurements
    as reconstructed from the dressed silhouettes."""
    from bodyshape.measurements import MEASUREMENT_NAMES

    given = MEASUREMENT_NAMES.index("height")  # the typed height: never refitted
    allowance = np.median(point - truth, axis=0)
    allowance[given] = 0.0
    for k in range(rounds):
        _, _, reported = undressed(shapes, heights, allowance, progress=f"clothing allowance {k + 1}/{rounds}")
        allowance = allowance + np.median(reported - truth, axis=0)
        allowance[given] = 0.0
    _, _, reported = undressed(shapes, heights, allowance, progress="clothing allowance, final")
    return allowance, reported
