"""How many Gauss-Newton steps the refit needs: the same calibration rows refitted with each.

    python -m training.refit_steps                  # steps 1 and 2, ~15 min on 2 cores
    python -m training.refit_steps --steps 1 2 3

The page reports the measurements of a refitted mesh (:mod:`bodyshape.refit`): the network's
body moved by the measurement correction and, for a person in fitted clothes, the clothing
allowance. Here the calibration splits of ``bodyshape calibrate-intervals`` (``data/calib``,
generated there when missing; never an evaluation split) are read as the page reads them (four
looks, 8 sub-pixel phases, the correction) and refitted with each number of steps. Printed per
split: chest / waist / hip MAE and bias against the truth, and how far the refitted mesh's
numbers stay from the target the refit was asked for (mean and SD, mm), and the refit's time
per body (read it on an idle machine). The dressed split asks
for the correction less the shipped clothing allowance; that allowance was fitted on these rows
(in-sample) through the shipped number of steps. The per-person scatter over re-framed photos:
``python -m training.capture_factors --refit-steps N``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bodyshape.report import slashed

GIRTHS = ("chest", "waist", "hip")


def main() -> None:
    from bodyshape.correction import load_correction, requested_change
    from bodyshape.measurements import MEASUREMENT_NAMES
    from bodyshape.paths import WEIGHTS_DIR
    from bodyshape.refit import refitted
    from bodyshape.uncertainty import load_intervals
    from training.calibrate_intervals import CALIBRATION_SPLITS, CLOTHING_SPLIT
    from training.evaluate import network_bodies
    from training.splits import load_split

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, nargs="+", default=[1, 2])
    p.add_argument("--data", type=Path, default=Path("data/calib"), help="where the calibration splits are cached")
    p.add_argument("--rows", type=int, default=None, help="the first ROWS of each split (default: all)")
    p.add_argument("--only", nargs="*", default=None, help="splits whose label contains one of these")
    a = p.parse_args()
    intervals = load_intervals(WEIGHTS_DIR)
    g = [MEASUREMENT_NAMES.index(n) for n in GIRTHS]
    rows = {name: (name, n, seed, "tight") for name, (n, seed) in CALIBRATION_SPLITS.items()}
    rows["dressed (fitted)"] = (CLOTHING_SPLIT[0], CLOTHING_SPLIT[1], CLOTHING_SPLIT[2], "fitted")
    rows = {k: v for k, v in rows.items() if not a.only or any(o in k for o in a.only)}
    if not rows:
        p.error(f"--only {' '.join(a.only)} matches no split; the splits are: {', '.join(CALIBRATION_SPLITS)}, dressed")

    corrections = {c: load_correction(WEIGHTS_DIR, c) for c in {clothing for *_, clothing in rows.values()}}
    print("| split | steps | MAE | bias | left undone: mean | left undone: SD | s a body |\n|---|---|---|---|---|---|---|")
    for label, (name, n, seed, clothing) in rows.items():
        split = load_split(name, a.data, n=n, seed=seed)
        front, side, height, truth = (x[: a.rows] for x in (split.front, split.side, split.height, split.truth))
        point, _, shape = network_bodies(WEIGHTS_DIR / "fused.safetensors", front, side, height)
        change = requested_change(shape, height, point, front, side, corrections[clothing], intervals.allowance(clothing))
        target = point + change
        for steps in a.steps:
            start = time.perf_counter()
            _, _, got = refitted(shape, height, change, progress=f"{label}, {steps} steps", steps=steps)
            seconds = (time.perf_counter() - start) / len(got)
            err, left = 1000 * (got - truth)[:, g], 1000 * (got - target)[:, g]
            print(f"| {label} ({len(got)}) | {steps} | {slashed(np.abs(err).mean(0), '.1f')} | {slashed(err.mean(0), '+.1f')} | "
                  f"{slashed(left.mean(0), '+.1f')} | {slashed(left.std(0), '.1f')} | {seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()
