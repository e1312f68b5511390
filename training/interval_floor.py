"""The intervals' spread floor (:data:`bodyshape.uncertainty.FLOOR_SHARE`), measured on held-out rows.

    python -m training.interval_floor        # ~25 min on 2 cores the first time (the rows are cached)

The interval is ``point + q * sqrt(spread^2 + floor^2)`` with ``floor = share * median spread``.
A floor as large as the typical spread makes every interval about as wide as every other, so
its coverage follows each kind of capture's error: the photo path (errors half as large, looks
that agree twice as well) was over-covered and the off-model bodies under-covered. A smaller
floor lets the spread of the four looks set the width.

The share is judged without the evaluation splits: the calibration splits of
``bodyshape calibrate-intervals`` (seeds 2xxx) and validation splits made by the same generators
from seeds of their own (3xxx, :data:`VALIDATION_SPLITS`; never a training, calibration or
evaluation seed) are each fitted on the other, and per share the table gives the held-out 80%
coverage per split and girth, the worst cell, the cells' mean distance from 80%, the mean
width and the interval score (width + 10 x the distance by which the truth falls outside;
lower is better, a proper score for an 80% interval) of the girths. No share wins on all:
the choice and why are in docs/evaluation.md, "The intervals' floor". The rows are those of
the shipped model as the page reports it (four looks, the correction, the refit), tight clothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from training.calibrate_intervals import CALIBRATION_SPLITS
from training.splits import OFF_MODEL

#: Validation split -> (rows, seed): the calibration splits from their seeds + 1000 (the
#: evaluation seeds + 2000; in_distribution: 3001), the off-model bodies twice as many.
VALIDATION_SPLITS: dict[str, tuple[int, int]] = {
    name: (2 * n if name == OFF_MODEL else n, seed + 1000) for name, (n, seed) in CALIBRATION_SPLITS.items()
}
#: Floor shares tried (1.0, the shipped one: the median spread itself).
SHARES: tuple[float, ...] = (2.0, 1.0, 0.5, 0.3, 0.1, 0.0)
FIELDS = ("truth", "point", "spread", "warned")


def split_rows(weights_dir: Path, splits: dict[str, tuple[int, int]], data: Path, cache: Path,
               label: str) -> dict[str, dict[str, np.ndarray]]:  # fmt: skip
    """Per split: truth, reported point, TTA spread (N, M) and capture-check ``warned`` (N,),
    cached in ``cache`` under the weights' and the correction's hashes."""
    from bodyshape.correction import CORRECTION_FILE, load_correction
    from bodyshape.uncertainty import file_sha256
    from training.calibrate_intervals import split_predictions
    from training.config import FUSED_STAGED, WEIGHT_NAMES

    weights = weights_dir / f"{WEIGHT_NAMES[FUSED_STAGED]}.safetensors"
    tag = file_sha256(weights)[:12] + file_sha256(weights_dir / CORRECTION_FILE)[:12]
    path = cache / f"interval_rows_{label}_{tag}.npz"
    if not path.exists():
        rows = {name: {"truth": truth, "point": p.point, "spread": p.spread, "warned": warned}
                for name, (truth, p, warned) in split_predictions(weights, splits, data, load_correction(weights_dir)).items()}  # fmt: skip
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(path, **{f"{s}__{f}": v for s, d in rows.items() for f, v in d.items()})
    with np.load(path) as z:
        out: dict[str, dict[str, np.ndarray]] = {}
        for key in z.files:
            split, field = key.split("__")
            if field in FIELDS:
                out.setdefault(split, {})[field] = z[key]
    return out


def held_out(fit_on: dict, judge_on: dict, share: float) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Fit on the rows of ``fit_on`` (all splits pooled), judge each split of ``judge_on`` ->
    split -> (coverage (M,), mean width (M,) mm, mean interval score (M,) mm)."""
    from bodyshape.uncertainty import fit_intervals

    cat = {f: np.concatenate([d[f] for d in fit_on.values()]) for f in FIELDS}
    model = fit_intervals(cat["truth"], cat["point"], cat["spread"], warned=cat["warned"].astype(bool), floor_share=share)
    out = {}
    for name, d in judge_on.items():
        low, high = model.bounds(d["point"], d["spread"], d["warned"].astype(bool))
        t = d["truth"]
        outside = np.maximum(low - t, 0) + np.maximum(t - high, 0)
        score = (high - low) + 2 / (1 - model.coverage) * outside
        out[name] = (((t >= low) & (t <= high)).mean(0), 1000 * (high - low).mean(0), 1000 * score.mean(0))
    return out


def main() -> None:
    from bodyshape.measurements import MEASUREMENT_NAMES
    from bodyshape.paths import WEIGHTS_DIR
    from bodyshape.report import slashed
    from bodyshape.uncertainty import FLOOR_SHARE

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    p.add_argument("--data", type=Path, default=Path("data/calib"), help="where the splits are cached")
    p.add_argument("--cache", type=Path, default=Path("runs/interval_floor"), help="where the rows are cached")
    a = p.parse_args()
    cal = split_rows(a.weights, CALIBRATION_SPLITS, a.data, a.cache, "calibration")
    val = split_rows(a.weights, VALIDATION_SPLITS, a.data, a.cache, "validation")
    girths = [MEASUREMENT_NAMES.index(g) for g in ("chest", "waist", "hip")]
    print("Held-out 80% coverage, chest / waist / hip, %; fitted on the calibration splits and judged on the "
          "validation splits, then the other way round")  # fmt: skip
    names = list(VALIDATION_SPLITS)
    print("| floor share | " + " | ".join(f"{n} (val · cal)" for n in names)
          + " | worst | mean distance from 80 | mean width, mm | interval score, mm |")  # fmt: skip
    print("|---|" + "---|" * (len(names) + 4))
    for share in SHARES:
        on_val, on_cal = held_out(cal, val, share), held_out(val, cal, share)
        cells = np.array([np.concatenate([on_val[n][0][girths], on_cal[n][0][girths]]) for n in names])
        both = [r for d in (on_val, on_cal) for r in d.values()]
        width = np.mean([r[1][girths] for r in both], axis=0)
        score = np.mean([r[2][girths] for r in both], axis=0)
        row = " | ".join("/".join(f"{100 * c:.0f}" for c in on_val[n][0][girths]) + " · "
                         + "/".join(f"{100 * c:.0f}" for c in on_cal[n][0][girths]) for n in names)  # fmt: skip
        print(f"| {share:g}{' (shipped)' if share == FLOOR_SHARE else ''} | {row} | {100 * cells.min():.0f} | "
              f"{100 * np.abs(cells - 0.8).mean():.1f} | {slashed(width)} | {slashed(score)} |")  # fmt: skip


if __name__ == "__main__":
    main()
