"""Which dressed rows the clothing allowance is fitted on, and which error it sets to zero.

    python -m training.allowance_ablation            # ~40 min on 2 cores (three refits a fitted variant)
    python -m training.allowance_ablation --only shipped "plain 80"
    python -m training.allowance_ablation --only shipped --correction runs/X/weights/correction_fitted.safetensors

The allowance (bodyshape/clothing.py) is one number per measurement that the page takes off a
body reported in *fitted* clothing. Each variant is fitted on dressed calibration rows and
judged, as the page reports (the correction, less the allowance, the refit), on two sets of
their own seeds, neither a training, calibration or evaluation seed:

- re-framed: the re-captured dressed persons of training/recaptures.py (seed 4244, 30 x 8);
- plain: dressed photo pairs framed as the photo split frames them (seed 4247, 100 pairs).

``--correction FILE`` adds a variant: the pooled rows' allowance fitted through that correction
(a candidate for *fitted* clothing, ``bodyshape fit-correction --clothing fitted``), judged with it.

Printed per variant: the allowance, the bias it leaves in-sample on each framing, and the MAE,
bias (and the re-framed persons' per-person SD) on each judge set, chest / waist / hip, mm.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bodyshape.report import slashed

GIRTHS = ("chest", "waist", "hip")
#: The plain-framed dressed photo pairs the variants are judged on: (rows, seed).
JUDGE_PLAIN: tuple[int, int] = (100, 4247)
#: Plain-framed pairs the allowance was fitted on until 2026-12-03 (the first rows of CLOTHING_SPLIT).
FORMER_ROWS = 80


def main() -> None:
    from bodyshape.clothing import fit_allowance
    from bodyshape.correction import (
        MeasurementCorrection,
        correction_inputs,
        load_correction,
        reported_bodies,
    )
    from bodyshape.measurements import MEASUREMENT_NAMES
    from bodyshape.paths import WEIGHTS_DIR
    from bodyshape.uncertainty import load_intervals
    from training.calibrate_intervals import CLOTHING_RECAPTURES, CLOTHING_SPLIT, dressed_rows
    from training.evaluate import predict_measurements
    from training.recaptures import JUDGE_CAPTURES, JUDGE_SEED, person_sd, recapture_set
    from training.splits import PHOTO, load_split

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("data/calib"), help="where the calibration rows are cached")
    p.add_argument("--cache", type=Path, default=Path("runs/correction"), help="where the re-captured persons are cached")
    p.add_argument("--only", nargs="*", default=None, help="variants whose label contains one of these (default: all)")
    p.add_argument("--correction", type=Path, nargs="*", default=[],
                   help="candidate corrections for fitted clothing, each a variant (always run)")
    a = p.parse_args()
    weights = WEIGHTS_DIR / "fused.safetensors"
    correction = load_correction(WEIGHTS_DIR, "fitted")
    g = [MEASUREMENT_NAMES.index(n) for n in GIRTHS]

    def network(split) -> dict[str, np.ndarray]:
        pred = predict_measurements(weights, split)  # the network's mean bodies, before correction and allowance
        return {"front": split.front, "side": split.side, "height": split.height, "truth": split.truth,
                "point": pred.point, "shape": pred.shape}  # fmt: skip

    pooled = network(dressed_rows(weights, a.data))
    plain_rows = CLOTHING_SPLIT[1]
    judges = {"re-framed": recapture_set(weights, *JUDGE_CAPTURES, JUDGE_SEED, a.cache),
              "plain": network(load_split(PHOTO, a.data, n=JUDGE_PLAIN[0], seed=JUDGE_PLAIN[1]))}  # fmt: skip
    persons, captures, seed = CLOTHING_RECAPTURES
    pool = f"plain {plain_rows} (seed {CLOTHING_SPLIT[2]}) + re-framed {persons} x {captures} (seed {seed})"
    former = {k: v[:FORMER_ROWS] for k, v in pooled.items()}
    variants: dict[str, tuple[dict | None, Callable[..., np.ndarray] | None, MeasurementCorrection]] = {
        "shipped (intervals.json)": (None, None, correction),
        f"plain {FORMER_ROWS} (seed {CLOTHING_SPLIT[2]}), median": (former, np.median, correction),
        f"{pool}, median": (pooled, np.median, correction),
        f"{pool}, mean": (pooled, np.mean, correction),
    }
    variants = {k: v for k, v in variants.items() if not a.only or any(o in k for o in a.only)}
    variants |= {f"{pool}, mean, correction {f}": (pooled, np.mean, MeasurementCorrection.load(f)) for f in a.correction}
    print(f"judged on re-framed persons of seed {JUDGE_SEED} ({JUDGE_CAPTURES[0]} x {JUDGE_CAPTURES[1]}) and "
          f"plain dressed pairs of seed {JUDGE_PLAIN[1]} ({JUDGE_PLAIN[0]}); chest / waist / hip, mm\n")
    print("| allowance fitted on | allowance | in-sample bias: plain ; re-framed | re-framed MAE | bias | per-person SD "
          "| plain MAE | bias | s |\n|---|---|---|---|---|---|---|---|---|")
    for label, (z, centre, corr) in variants.items():
        start = time.perf_counter()
        if z is None:
            allowance, in_sample = np.asarray(load_intervals(WEIGHTS_DIR).allowance("fitted")), "–"
        else:
            change = corr.change(correction_inputs(z["point"], z["shape"], z["height"], z["front"], z["side"]))
            allowance, reported = fit_allowance(z["shape"], z["height"], z["point"], z["truth"], corrected=change,
                                                centre=centre)  # fmt: skip
            err = 1000 * (reported - z["truth"])[:, g]
            in_sample = slashed(err[:plain_rows].mean(0), "+.1f") + (" ; " + slashed(err[plain_rows:].mean(0), "+.1f")
                                                                if len(err) > plain_rows else "")  # fmt: skip
        cells = []
        for name, j in judges.items():
            _, _, got = reported_bodies(j["shape"], j["height"], j["point"], j["front"], j["side"], corr, allowance)
            err = 1000 * (got - j["truth"])[:, g]
            cells += [slashed(np.abs(err).mean(0)), slashed(err.mean(0), "+.1f")]
            if name == "re-framed":
                cells.append(slashed(person_sd(1000 * got[:, g], j["person"])))
        print(f"| {label} | {slashed(1000 * allowance[g])} | {in_sample} | " + " | ".join(cells)
              + f" | {time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
