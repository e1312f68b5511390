"""What the person wears in the photos, and the body under it.

A silhouette is the outline of the body *with* its clothes. In skin-tight clothing the two are
the same; in a T-shirt and shorts that follow the body, the cloth stands about 1 cm off the
skin, and a margin ``m`` adds ``2 pi m`` to a girth (+63 mm for 1 cm): no silhouette can tell
that from a larger body. So the person says what they wear (the page asks; ``bodyshape
reconstruct --clothing``), as ISO 8559-1 measures the body, not the garment.

For ``fitted`` clothing the body is corrected by a measurement correction of its own
(``correction_fitted.safetensors``, :func:`bodyshape.correction.load_correction`), fitted on
dressed bodies measured bare, which takes most of the cloth off body by body; what it leaves is
the *clothing allowance*, one number per measurement, fitted through it on dressed calibration
rows, plain-framed photo pairs and re-framed re-captures (their own seeds, never an evaluation
split; ``bodyshape calibrate-intervals``, stored in ``intervals.json``) so that the refitted
bodies have no mean error there (:func:`fit_allowance`; a few mm since 2026-12-05, 6-7 cm at
the torso girths with the general correction). The mesh moves with the
numbers: the shape vector is refitted to them (:mod:`bodyshape.refit`, together with the
measurement correction of :mod:`bodyshape.correction`), so the numbers shown are still
measured on the mesh shown. The allowance is what the synthetic
dressing of the calibration split adds (0.5-1.5 cm of cloth over the torso and hips, drawn
like the evaluation's dressed photos); real garments differ, which the wider interval of a
``fitted`` result has to carry.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bodyshape.errors import BodyShapeError

#: Choice -> what the page and the CLI say. The first is the default.
CLOTHING: dict[str, str] = {
    "tight": "underwear, swimwear or skin-tight sportswear",
    "fitted": "a T-shirt and shorts that follow the body (not loose)",
}
DEFAULT_CLOTHING = next(iter(CLOTHING))


def check_clothing(clothing: str) -> str:
    if clothing not in CLOTHING:
        raise BodyShapeError(f"clothing must be one of {', '.join(CLOTHING)}, got {clothing!r}")
    return clothing


#: Rounds of the allowance's calibration (a fixed point: the refit leaves part of each
#: measurement's shift undone, so the allowance grows by the error that remains).
CALIBRATION_ROUNDS = 2


def fit_allowance(shapes: np.ndarray, heights: np.ndarray, point: np.ndarray, truth: np.ndarray,
                  corrected: np.ndarray | None = None, rounds: int = CALIBRATION_ROUNDS,
                  centre: Callable[..., np.ndarray] = np.mean) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Allowance (M,) such that the refitted bodies of dressed calibration rows have no mean
    error (the bias the product is judged by; the median left 1-2 mm more bias on held-out
    dressed sets: ``python -m training.allowance_ablation``), and those bodies' measurements
    (N, M), metres. ``point``: the bodies' measurements as reconstructed from the dressed
    silhouettes; ``corrected`` (N, M): the change the measurement correction makes to each
    (bodyshape/correction.py; None: none), which the allowance is taken off together with;
    ``centre``: the error statistic made zero."""
    from bodyshape.measurements import MEASUREMENT_NAMES
    from bodyshape.refit import refitted

    base = np.zeros_like(point) if corrected is None else np.asarray(corrected)

    given = MEASUREMENT_NAMES.index("height")  # the typed height: never refitted
    allowance = centre(point + base - truth, axis=0)
    allowance[given] = 0.0
    for k in range(rounds):
        _, _, reported = refitted(shapes, heights, base - allowance, progress=f"clothing allowance {k + 1}/{rounds}")
        allowance = allowance + centre(reported - truth, axis=0)
        allowance[given] = 0.0
    _, _, reported = refitted(shapes, heights, base - allowance, progress="clothing allowance, final")
    return allowance, reported
