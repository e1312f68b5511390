"""Move a body's measurements by a given change, and its mesh with them.

Two things change the reported measurements after the network: the learned measurement
correction (:mod:`bodyshape.correction`) and the clothing allowance of a person in fitted
clothes (:mod:`bodyshape.clothing`). Both keep the product's rule that the numbers shown are
measured on the mesh shown: the 20 shape numbers are refitted so that the mesh's measurements
move by the change (one damped Gauss-Newton step on a finite-difference Jacobian, 23 extra
meshes, 0.4-0.6 s a body on 2 cores), and the measurements are then taken on the new mesh.
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


def refit(shape: np.ndarray, height_m: float, change: np.ndarray) -> np.ndarray:
    """The shape vector whose measurements are those of ``shape`` plus ``change`` (M,), metres,
    as nearly as one regularised Gauss-Newton step gets. The measurements are only piecewise
    smooth (the waist is the smallest girth of several levels, the bust the most forward point)
    and steep near the ends of the phenotypes' ranges: a full step overshot by 3-4x on some
    bodies, and further steps diverged. So the step is regularised (:data:`RIDGE`) and the best
    of :data:`STEP_SCALES` times it, by how well the measured change matches, is kept (each
    costs one more mesh). A zero change returns ``shape`` untouched. Height is kept: the mesh
    is scaled to it."""
    import torch

    from bodyshape.body_model import clamp_shape
    from bodyshape.measurements import get_measurer
    from bodyshape.reconstruct import mesh_from_shape

    want = np.asarray(change, np.float64)
    if not np.any(want):
        return np.asarray(shape, np.float32).copy()
    meas, jac = measurement_jacobian(shape, height_m)
    delta = np.linalg.solve(jac.T @ jac + RIDGE * np.eye(jac.shape[1]), jac.T @ want)
    base = torch.from_numpy(np.asarray(shape, np.float32).reshape(1, -1))
    steps = clamp_shape(base + torch.from_numpy(np.outer(STEP_SCALES, delta).astype(np.float32))).numpy()
    got = get_measurer().batch(mesh_from_shape(steps, np.full(len(steps), height_m, np.float32))) - meas
    return steps[int(np.argmin(np.linalg.norm(got - want, axis=1)))]


def refitted(shapes: np.ndarray, heights: np.ndarray, changes: np.ndarray,
             progress: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """:func:`refit` for B bodies, ``changes`` (B, M) or one (M,) for all -> (shapes (B, S),
    meshes (B, V, 3), measurements (B, M)), the measurements taken on the refitted meshes."""
    from tqdm import tqdm

    from bodyshape.measurements import get_measurer
    from bodyshape.reconstruct import mesh_from_shape

    h = np.asarray(heights, np.float32).reshape(-1)
    c = np.broadcast_to(np.asarray(changes, np.float64), (len(h), np.shape(changes)[-1]))
    rows = tqdm(range(len(h)), desc=progress, unit="body", disable=progress is None)
    out = np.stack([refit(shapes[i], float(h[i]), c[i]) for i in rows])
    meshes = mesh_from_shape(out, h)
    return out, meshes, get_measurer().batch(meshes)
