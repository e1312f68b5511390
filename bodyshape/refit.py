"""Move a body's measurements by a given change, and its mesh with them.

Two things change the reported measurements after the network: the learned measurement
correction (:mod:`bodyshape.correction`) and the clothing allowance of a person in fitted
clothes (:mod:`bodyshape.clothing`). Both keep the product's rule that the numbers shown are
measured on the mesh shown: the 20 shape numbers are refitted so that the mesh's measurements
move by the change (two damped Gauss-Newton steps, each on a finite-difference Jacobian at
the body it starts from: 47 extra meshes, about 0.5 s a body on 2 cores), and the measurements
are then taken on the new mesh.
"""

from __future__ import annotations

import numpy as np

#: Finite-difference step in shape units (phenotypes 0..1, local changes -1..1).
FD_STEP = 0.05
#: Ridge weight of the refit, in (metres of measurement)^2 per (shape unit)^2: keeps the step
#: small where a measurement cannot move without large changes of the body (1e-5 let single
#: parameters move by 0.8 for the same predicted change that 1e-3 reaches with 0.2).
RIDGE = 1e-3
#: Fractions of the Gauss-Newton step tried; the best match to the change is kept.
STEP_SCALES = (1.0, 0.7, 0.4)
#: Gauss-Newton steps. One step left 3-7 mm of a 6-8 cm clothing allowance undone on average
#: (up to 27 mm), a share that jumped with the scale picked, and so added about 1-2 mm to the
#: per-person scatter of re-framed photos; a second step from a new Jacobian halves what is
#: left, a third gained nothing (docs/evaluation.md, "The refit in two Gauss-Newton steps").
STEPS = 2
#: Weight of chest, waist and hip in the refit's match (the other measurements 1). The 20 shape
#: numbers cannot move all 16 measurements exactly as asked; with equal weights what was left
#: undone of the girths scattered by 3-5 mm (SD) between two captures of one person, and added
#: 0.3-1.1 mm to the per-person SD of re-captured photos. Weighted 3 times, the girths are
#: left 2 mm (SD) undone and the other measurements match as well as before (docs/evaluation.md,
#: "The refit, the girths weighted").
GIRTH_WEIGHT = 3.0


def match_weights() -> np.ndarray:
    """(M,) how much each measurement counts in the refit's match: :data:`GIRTH_WEIGHT` for
    chest, waist and hip, 1 for the others."""
    from bodyshape.measurements import MEASUREMENT_NAMES

    return np.array([GIRTH_WEIGHT if n in ("chest", "waist", "hip") else 1.0 for n in MEASUREMENT_NAMES])


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


def refit(shape: np.ndarray, height_m: float, change: np.ndarray, steps: int | None = None) -> np.ndarray:
    """The shape vector whose measurements are those of ``shape`` plus ``change`` (M,), metres,
    as nearly as ``steps`` (None: :data:`STEPS`) regularised Gauss-Newton steps get. The measurements are only
    piecewise smooth (the waist is the smallest girth of several levels, the bust the most
    forward point) and steep near the ends of the phenotypes' ranges: a full step overshot by
    3-4x on some bodies. So each step is regularised (:data:`RIDGE`) and the best of
    :data:`STEP_SCALES` times it, by how well the measured change matches, is kept (each costs
    one more mesh); after the first, staying where it is counts too, so a step never makes the
    match worse. The match weights chest, waist and hip more (:func:`match_weights`). A zero
    change returns ``shape`` untouched. Height is kept: the mesh is scaled to it."""
    import torch

    from bodyshape.body_model import clamp_shape
    from bodyshape.measurements import get_measurer
    from bodyshape.reconstruct import mesh_from_shape

    want = np.asarray(change, np.float64)
    if not np.any(want):
        return np.asarray(shape, np.float32).copy()
    current = np.asarray(shape, np.float32).reshape(-1)
    meas, jac = measurement_jacobian(current, height_m)
    target = meas + want
    w = match_weights()
    for k in range(STEPS if steps is None else steps):
        if k:
            meas, jac = measurement_jacobian(current, height_m)
        jw = jac * w[:, None]
        delta = np.linalg.solve(jw.T @ jw + RIDGE * np.eye(jac.shape[1]), jw.T @ ((target - meas) * w))
        base = torch.from_numpy(current.reshape(1, -1))
        tried = clamp_shape(base + torch.from_numpy(np.outer(STEP_SCALES, delta).astype(np.float32))).numpy()
        got = get_measurer().batch(mesh_from_shape(tried, np.full(len(tried), height_m, np.float32)))
        if k:  # staying is a candidate after the first step
            tried, got = np.vstack([current[None], tried]), np.vstack([meas[None], got])
        current = tried[int(np.argmin(np.linalg.norm((got - target) * w, axis=1)))]
    return current


def refitted(shapes: np.ndarray, heights: np.ndarray, changes: np.ndarray, progress: str | None = None,
             steps: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """:func:`refit` for B bodies, ``changes`` (B, M) or one (M,) for all -> (shapes (B, S),
    meshes (B, V, 3), measurements (B, M)), the measurements taken on the refitted meshes."""
    from tqdm import tqdm

    from bodyshape.measurements import get_measurer
    from bodyshape.reconstruct import mesh_from_shape

    h = np.asarray(heights, np.float32).reshape(-1)
    c = np.broadcast_to(np.asarray(changes, np.float64), (len(h), np.shape(changes)[-1]))
    rows = tqdm(range(len(h)), desc=progress, unit="body", disable=progress is None)
    out = np.stack([refit(shapes[i], float(h[i]), c[i], steps) for i in rows])
    meshes = mesh_from_shape(out, h)
    return out, meshes, get_measurer().batch(meshes)
