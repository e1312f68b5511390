"""``bodyshape calibrate-intervals``: fit the 80% intervals on calibration splits of their own.

The calibration splits are made by the evaluation splits' generators (:mod:`training.splits`)
from other seeds, so the intervals are fitted on the same kinds of data as they are judged on
but never on the evaluation rows themselves. They cover what the product claims to handle:
bare (tight clothing) bodies in the capture pose and off it, bodies off the body model, and
bare photos through rembg. Dressed photos (a cloth margin the silhouette cannot tell from the
body) are not mixed in: their own rows give the clothing allowance of people who say they wear
fitted clothes (bodyshape/clothing.py) and the quantiles of the refitted bodies' error. Those
rows are half plain-framed dressed photo pairs, half dressed persons captured four times each,
re-framed as a second capture differs (training/recaptures.py), so that the allowance holds for
both framings, not only the one it was fitted on.

Writes ``intervals.json`` next to the weights and prints the in-sample coverage per split.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np

from training.splits import ARMS, IN_DISTRIBUTION, OFF_MODEL, PHOTO, PHOTO_BARE, SPLIT_SEEDS, STANCE

if TYPE_CHECKING:
    from bodyshape.correction import MeasurementCorrection
    from training.evaluate import SplitPrediction

#: Calibration split -> (rows, seed). Seeds are the evaluation seeds + 1000 (in_distribution:
#: 2001), none of them a training or evaluation seed.
CALIBRATION_SPLITS: dict[str, tuple[int, int]] = {
    IN_DISTRIBUTION: (150, 2001),
    STANCE: (150, SPLIT_SEEDS[STANCE] + 1000),
    ARMS: (150, SPLIT_SEEDS[ARMS] + 1000),
    OFF_MODEL: (150, SPLIT_SEEDS[OFF_MODEL] + 1000),
    PHOTO_BARE: (80, SPLIT_SEEDS[PHOTO_BARE] + 1000),
}
#: Dressed photo pairs for the clothing allowance ("fitted", bodyshape/clothing.py): (split, rows, seed).
CLOTHING_SPLIT: tuple[str, int, int] = (PHOTO, 200, SPLIT_SEEDS[PHOTO] + 1000)
#: And re-framed dressed captures (training/recaptures.py): (persons, captures each, seed); the
#: seed is none of the splits', the training's or the other re-capture sets'.
CLOTHING_RECAPTURES: tuple[int, int, int] = (50, 4, 4246)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from bodyshape.paths import WEIGHTS_DIR

    p.add_argument("--weights", type=Path, default=WEIGHTS_DIR, help="folder with fused.safetensors; intervals.json is written there")
    p.add_argument("--data", type=Path, default=Path("data/calib"), help="where the calibration splits are cached")


def dressed_rows(weights: Path, data: Path) -> SimpleNamespace:
    """The clothing allowance's rows: :data:`CLOTHING_SPLIT` followed by
    :data:`CLOTHING_RECAPTURES` (cached in ``data``) -> ``front``, ``side``, ``height``, ``truth``."""
    from training.recaptures import recapture_set
    from training.splits import load_split

    dressed_name, n, seed = CLOTHING_SPLIT
    plain = load_split(dressed_name, data, n=n, seed=seed)
    again = recapture_set(weights, *CLOTHING_RECAPTURES, data)
    return SimpleNamespace(**{k: np.concatenate([getattr(plain, k), again[k]]) for k in ("front", "side", "height", "truth")})


def split_predictions(weights: Path, splits: dict[str, tuple[int, int]], data: Path,
                      correction: MeasurementCorrection | None) -> dict[str, tuple[np.ndarray, SplitPrediction, np.ndarray]]:  # fmt: skip
    """Per split of ``splits`` (name -> (rows, seed), cached in ``data``): its truth (N, M), what
    the page reports (:class:`training.evaluate.SplitPrediction`, with the ``correction``, no
    interval) and whether each capture fails a capture check (N,)."""
    from training.evaluate import capture_warned, predict_measurements
    from training.splits import load_split

    rows = {}
    for name, (n, seed) in splits.items():
        split = load_split(name, data, n=n, seed=seed)
        warned = capture_warned(split.front, split.side)
        rows[name] = (split.truth, predict_measurements(weights, split, correction=correction), warned)
        print(f"{name}: {len(split.height)} rows (seed {seed}), {warned.mean():.0%} fail a capture check")
    return rows


def run(args: argparse.Namespace) -> int:
    from bodyshape.clothing import fit_allowance
    from bodyshape.correction import CORRECTION_FILE, correction_inputs, correction_path, load_correction
    from bodyshape.measurements import MEASUREMENT_NAMES
    from bodyshape.uncertainty import INTERVALS_FILE, file_sha256, fit_clothing, fit_intervals
    from training.config import FUSED_STAGED, WEIGHT_NAMES
    from training.evaluate import (
        GIRTHS_SHOWN,
        SplitPrediction,
        capture_warned,
        interval_quality,
        predict_measurements,
    )

    weights = args.weights / f"{WEIGHT_NAMES[FUSED_STAGED]}.safetensors"
    correction = load_correction(args.weights)  # the intervals are those of the corrected measurements
    rows = split_predictions(weights, CALIBRATION_SPLITS, args.data, correction)
    truth = np.concatenate([t for t, _, _ in rows.values()])
    point = np.concatenate([p.point for _, p, _ in rows.values()])
    spread = np.concatenate([p.spread for _, p, _ in rows.values()])
    warned = np.concatenate([w for _, _, w in rows.values()])
    what = ", ".join(f"{k} ({n} rows, seed {s})" for k, (n, s) in CALIBRATION_SPLITS.items())
    dressed_name, n, seed = CLOTHING_SPLIT
    persons, captures, recapture_seed = CLOTHING_RECAPTURES
    what += (f"; clothing allowance: {dressed_name} ({n} rows, seed {seed}) and re-framed dressed captures "
             f"({persons} persons x {captures}, seed {recapture_seed})")
    model = fit_intervals(truth, point, spread, calibrated_on=f"bodyshape calibrate-intervals: {what}",
                          weights_sha256=file_sha256(weights), warned=warned,
                          correction_sha256=file_sha256(args.weights / CORRECTION_FILE))
    dressed = dressed_rows(weights, args.data)
    raw = predict_measurements(weights, dressed)  # the network's bodies, before correction and allowance
    fitted = load_correction(args.weights, "fitted")  # fitted clothing's own correction, where shipped
    change = fitted.change(correction_inputs(raw.point, raw.shape, dressed.height, dressed.front, dressed.side))
    allowance, reported = fit_allowance(raw.shape, dressed.height, raw.point, dressed.truth, corrected=change)
    model = fit_clothing(model, dressed.truth, reported, raw.spread, allowance)
    model = dataclasses.replace(model, fitted_correction_sha256=file_sha256(correction_path(args.weights, "fitted")))
    print("clothing allowance (fitted), mm: " + ", ".join(
        f"{m} {1000 * a:+.1f}" for m, a in zip(MEASUREMENT_NAMES, allowance, strict=True)))
    out = args.weights / INTERVALS_FILE
    model.save(out)
    print(f"wrote {out}")
    print("in-sample coverage (the evaluation splits' coverage is in docs/evaluation.md):")
    for name, (t, p, w) in rows.items():
        low, high = model.bounds(p.point, p.spread, w)
        q = interval_quality(SplitPrediction(p.point, low, high, p.spread), t)
        print(f"  {name:16s} " + "  ".join(f"{g} {q[g]['coverage']:.0%} ({q[g]['width']:.0f} mm)" for g in GIRTHS_SHOWN))
    dressed_pred = SplitPrediction(reported, *model.bounds(reported, raw.spread, capture_warned(dressed.front, dressed.side),
                                                            "fitted"), raw.spread)  # fmt: skip
    q = interval_quality(dressed_pred, dressed.truth)
    print(f"  {'dressed (fitted)':16s} " + "  ".join(f"{g} {q[g]['coverage']:.0%} ({q[g]['width']:.0f} mm)" for g in GIRTHS_SHOWN))
    assert len(model.names) == len(MEASUREMENT_NAMES)
    return 0

