"""How sure is each measurement: test-time augmentation and calibrated 80% intervals.

Test-time augmentation (TTA): the network reads the silhouettes four times, as taken and
mirrored (front, side, both). People are nearly left-right symmetric, and the training data
mirrored the side view half the time, so each copy is a fair second look; the mirrored copies
go through :func:`bodyshape.silhouette.normalize_silhouette` like any other mask. The reported
body is the mean of the four shape vectors (measured on its own mesh, so the numbers and the
mesh agree); the spread of the four copies' measurements says how much the answer depends on
details of the outline.

Interval per measurement: ``point + q * sqrt(spread^2 + floor^2)``, ``q`` from 10% to 90%: a
normalised conformal interval. ``floor`` (the typical spread, :data:`FLOOR_SHARE`) and the two
quantiles are fitted by ``bodyshape calibrate-intervals`` on calibration splits generated from
their own seeds (never the evaluation splits) and stored next to the weights (``intervals.json``).

A capture that fails a capture check (:mod:`bodyshape.capture`: an odd pose, a turned body, a
small person) gets its own, wider pair of quantiles, fitted on the calibration rows whose
silhouettes fail a check: on those rows the network errs about 35% more (stance and arms
splits), an error the four looks do not see because they share the pose.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bodyshape.errors import BodyShapeError
from bodyshape.measurements import MEASUREMENT_NAMES
from bodyshape.silhouette import normalize_silhouette

#: The four looks of TTA: (name, mirror the front, mirror the side).
TTA_VARIANTS: tuple[tuple[str, bool, bool], ...] = (
    ("as taken", False, False),
    ("front mirrored", True, False),
    ("side mirrored", False, True),
    ("both mirrored", True, True),
)
N_TTA = len(TTA_VARIANTS)
#: Share of true values an interval is meant to contain.
COVERAGE = 0.8
INTERVALS_FILE = "intervals.json"

log = logging.getLogger(__name__)


def mirrored(silhouettes: np.ndarray) -> np.ndarray:
    """(B, H, W) normalised silhouettes, mirrored left-right and normalised again."""
    return np.stack([normalize_silhouette(np.ascontiguousarray(s[:, ::-1])) for s in silhouettes])


def tta_inputs(front: np.ndarray, side: np.ndarray, height: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(B, H, W) pairs -> (N_TTA * B, H, W) pairs and heights, variant-major (variant k is rows k*B..)."""
    ff, sf = mirrored(front), mirrored(side)
    fronts = [ff if mf else front for _, mf, _ in TTA_VARIANTS]
    sides = [sf if ms else side for _, _, ms in TTA_VARIANTS]
    h = np.asarray(height, np.float32).reshape(-1)
    return np.concatenate(fronts), np.concatenate(sides), np.tile(h, N_TTA)


def split_variants(values: np.ndarray, batch: int) -> np.ndarray:
    """(N_TTA * B, ...) variant-major -> (N_TTA, B, ...)."""
    return np.asarray(values).reshape((N_TTA, batch) + np.asarray(values).shape[1:])


@dataclass(frozen=True)
class IntervalModel:
    """Per measurement (in MEASUREMENT_NAMES order): the spread floor (m) and the lower/upper
    quantiles of the normalised error ``(truth - point) / sqrt(spread^2 + floor^2)``."""

    names: tuple[str, ...]
    floor: tuple[float, ...]
    q_low: tuple[float, ...]
    q_high: tuple[float, ...]
    coverage: float = COVERAGE
    calibrated_on: str = ""
    weights_sha256: str = ""  # the fused weights it was calibrated for
    #: The measurement correction it was calibrated with (the intervals and the clothing
    #: allowance are those of the corrected measurements); "": not recorded (before 2026-12-04).
    correction_sha256: str = ""
    #: The correction the fitted-clothing allowance was fitted through (``correction_fitted``
    #: where one is shipped, else the general one: :func:`bodyshape.correction.load_correction`);
    #: "": not recorded (before 2026-12-05).
    fitted_correction_sha256: str = ""
    #: Quantiles for captures that failed a capture check (never narrower than q_low/q_high).
    q_low_warned: tuple[float, ...] = ()
    q_high_warned: tuple[float, ...] = ()
    warned_rows: int = 0  # calibration rows behind them
    #: Clothing "fitted" (bodyshape/clothing.py): the allowance the body is refitted by (m) and
    #: the quantiles of the refitted body's error, fitted on dressed photo pairs.
    fitted_allowance: tuple[float, ...] = ()
    q_low_fitted: tuple[float, ...] = ()
    q_high_fitted: tuple[float, ...] = ()
    fitted_rows: int = 0

    def allowance(self, clothing: str) -> np.ndarray:
        """What ``clothing`` adds to each measurement (m), to take off the body: zero for tight."""
        from bodyshape.clothing import DEFAULT_CLOTHING, check_clothing

        if check_clothing(clothing) == DEFAULT_CLOTHING:
            return np.zeros(len(self.names))
        if not self.fitted_allowance:
            raise BodyShapeError("this interval calibration has no clothing allowance: run `bodyshape calibrate-intervals`")
        return np.asarray(self.fitted_allowance)

    def bounds(self, point: np.ndarray, spread: np.ndarray, warned: bool | np.ndarray = False,
               clothing: str = "tight") -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """Point (..., M) and TTA spread (..., M), metres -> (low, high), metres.

        ``warned``: the capture failed a capture check (a bool, or one per row of ``point``);
        such rows get the wider quantiles fitted on failed captures. ``clothing`` "fitted": the
        point is the refitted body's (:mod:`bodyshape.refit`) and the quantiles
        are those of dressed photo pairs (the wider of the two where a check failed too)."""
        from bodyshape.clothing import DEFAULT_CLOTHING, check_clothing

        scale = np.sqrt(np.asarray(spread, np.float64) ** 2 + np.asarray(self.floor) ** 2)
        q_lo, q_hi = np.asarray(self.q_low), np.asarray(self.q_high)
        if self.q_low_warned:
            w = np.asarray(warned, bool)[..., None] if np.ndim(warned) else np.asarray(bool(warned))
            q_lo = np.where(w, np.asarray(self.q_low_warned), q_lo)
            q_hi = np.where(w, np.asarray(self.q_high_warned), q_hi)
        if check_clothing(clothing) != DEFAULT_CLOTHING and self.q_low_fitted:
            q_lo = np.minimum(q_lo, np.asarray(self.q_low_fitted))
            q_hi = np.maximum(q_hi, np.asarray(self.q_high_fitted))
        low = point + q_lo * scale
        high = point + q_hi * scale
        # The interval always contains the reported value (a quantile pair that excludes it
        # would be a bias correction in disguise; the point stays the body the mesh shows).
        return np.minimum(low, point), np.maximum(high, point)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> IntervalModel:
        try:
            d = json.loads(Path(path).read_text())
            model = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
        except (OSError, ValueError, TypeError) as e:
            raise BodyShapeError(f"cannot read the interval calibration {path}: {e}") from e
        if tuple(model.names) != tuple(MEASUREMENT_NAMES):
            raise BodyShapeError(
                f"{path} was calibrated for measurements {list(model.names)}, this version has "
                f"{list(MEASUREMENT_NAMES)}: run `bodyshape calibrate-intervals`"
            )
        return model


#: The spread floor as a share of the calibration rows' median spread. Smaller shares let the
#: looks' spread set the width (the photo path's looks agree about twice as well as the rendered
#: splits' and its errors are half as large), larger ones make the widths more alike. Measured
#: by ``python -m training.interval_floor`` on held-out calibration and validation rows (docs/
#: evaluation.md, "The intervals' floor"): 0.1 brings every split's coverage nearer 80% (the
#: worst 65% -> 70%) but widens the girths' intervals by 23% and worsens their interval score by
#: 17%; 2 narrows them by 7% and covers the bare photos 95%. 1 stays, between the two.
FLOOR_SHARE = 1.0
#: Fewer calibration rows with a failed capture check than this: no separate quantiles for them.
MIN_WARNED_ROWS = 40


def _quantiles(score: np.ndarray, coverage: float) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the lower and upper quantile of normalised errors that leave ``coverage`` between them."""
    tail = 100 * (1 - coverage) / 2
    return np.percentile(score, tail, axis=0), np.percentile(score, 100 - tail, axis=0)


def fit_intervals(truth: np.ndarray, point: np.ndarray, spread: np.ndarray, calibrated_on: str = "",
                  coverage: float = COVERAGE, weights_sha256: str = "",
                  warned: np.ndarray | None = None, correction_sha256: str = "",
                  floor_share: float = FLOOR_SHARE) -> IntervalModel:  # fmt: skip
    """Fit an :class:`IntervalModel` on calibration rows (N, M), metres.

    ``warned`` (N,) bool: rows whose capture failed a capture check. The ordinary quantiles
    are fitted on the other rows, the warned ones on these (when there are at least
    :data:`MIN_WARNED_ROWS`), and never narrower than the ordinary ones."""
    floor = np.maximum(floor_share * np.median(spread, axis=0), 1e-4)
    score = (truth - point) / np.sqrt(spread**2 + floor**2)
    warned = np.zeros(len(score), bool) if warned is None else np.asarray(warned, bool)
    q_low, q_high = _quantiles(score[~warned] if (~warned).sum() >= MIN_WARNED_ROWS else score, coverage)
    q_low_w, q_high_w = q_low, q_high
    if warned.sum() >= MIN_WARNED_ROWS:
        lo, hi = _quantiles(score[warned], coverage)
        q_low_w, q_high_w = np.minimum(q_low, lo), np.maximum(q_high, hi)

    def t(x: np.ndarray) -> tuple[float, ...]:
        return tuple(float(v) for v in x)

    return IntervalModel(
        names=tuple(MEASUREMENT_NAMES), floor=t(floor), q_low=t(q_low), q_high=t(q_high),
        coverage=coverage, calibrated_on=calibrated_on, weights_sha256=weights_sha256, correction_sha256=correction_sha256,
        q_low_warned=t(q_low_w), q_high_warned=t(q_high_w), warned_rows=int(warned.sum()),
    )


def fit_clothing(model: IntervalModel, truth: np.ndarray, reported: np.ndarray, spread: np.ndarray,
                 allowance: np.ndarray) -> IntervalModel:  # fmt: skip
    """``model`` with the clothing allowance (M,) and the quantiles of the refitted bodies'
    error on dressed calibration rows (``reported``: their measurements after the refit, (N, M))."""
    from dataclasses import replace

    score = (truth - reported) / np.sqrt(spread**2 + np.asarray(model.floor) ** 2)
    q_low, q_high = _quantiles(score, model.coverage)
    return replace(
        model, fitted_allowance=tuple(float(x) for x in allowance),
        q_low_fitted=tuple(float(x) for x in q_low), q_high_fitted=tuple(float(x) for x in q_high),
        fitted_rows=len(score),
    )


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_intervals(weights_dir: str | Path | None = None) -> IntervalModel:
    """The calibration shipped with the weights; logs a warning when it was fitted for other
    fused weights or with another measurement correction than the one beside it (after
    ``bodyshape ship`` or ``bodyshape fit-correction``, run ``bodyshape calibrate-intervals``)."""
    from bodyshape.correction import CORRECTION_FILE, correction_path
    from bodyshape.paths import WEIGHTS_DIR

    folder = Path(weights_dir or WEIGHTS_DIR)
    model = IntervalModel.load(folder / INTERVALS_FILE)
    fused, correction = folder / "fused.safetensors", folder / CORRECTION_FILE
    fitted = correction_path(folder, "fitted")
    if fused.exists() and model.weights_sha256 != file_sha256(fused):
        log.warning("%s was calibrated for other weights than %s: its intervals are stale; run "
                    "`bodyshape calibrate-intervals`", folder / INTERVALS_FILE, fused)
    elif model.correction_sha256 and correction.exists() and model.correction_sha256 != file_sha256(correction):
        log.warning("%s was calibrated with another measurement correction than %s: its intervals and clothing "
                    "allowance are stale; run `bodyshape calibrate-intervals`", folder / INTERVALS_FILE, correction)
    elif model.fitted_correction_sha256 and fitted.exists() and model.fitted_correction_sha256 != file_sha256(fitted):
        log.warning("%s fitted its clothing allowance through another measurement correction than %s: the allowance "
                    "is stale; run `bodyshape calibrate-intervals`", folder / INTERVALS_FILE, fitted)
    return model


@dataclass
class TTAMeasurements:
    """What TTA gives for B bodies: the mean shape and its mesh (the reported body), and the
    four copies' measurements."""

    shape: np.ndarray  # (B, N_SHAPE): the mean of the variants' shapes
    vertices: np.ndarray  # (B, V, 3) metres: the mean shape's mesh at the stated height
    variant_measurements: np.ndarray  # (N_TTA, B, M) metres
    measurements: np.ndarray  # (B, M) metres: the mean shape's mesh measured (before any refit)

    @property
    def spread(self) -> np.ndarray:
        """(B, M) standard deviation of the variants' measurements, metres."""
        return self.variant_measurements.std(axis=0)


def tta_measure(variant_shapes: np.ndarray, variant_meshes: np.ndarray | None, height: np.ndarray) -> TTAMeasurements:
    """Variant-major shapes (N_TTA * B, S) (and their meshes, or None to build them) -> :class:`TTAMeasurements`.

    The callers differ only in where the variants' shapes (and meshes) come from: a Triton
    backend on the page, the in-process predictor in the evaluation."""
    from bodyshape.measurements import get_measurer
    from bodyshape.reconstruct import mesh_from_shape

    h = np.asarray(height, np.float32).reshape(-1)
    b = len(h)
    meshes = variant_meshes if variant_meshes is not None else mesh_from_shape(variant_shapes, np.tile(h, N_TTA))
    meas = split_variants(get_measurer().batch(np.asarray(meshes, np.float32)), b)
    mean = split_variants(np.asarray(variant_shapes, np.float32), b).mean(axis=0)
    mesh = mesh_from_shape(mean, h)
    return TTAMeasurements(mean, mesh, meas, get_measurer().batch(mesh))
