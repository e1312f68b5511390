"""How the refit weighs its match: re-captured persons refitted with each variant.

    python -m training.refit_match                       # 4 variants, ~10 min on 2 cores
    python -m training.refit_match --variants 1e-3:1 1e-3:3 --intervals OLD/intervals.json

The page reports the measurements of a refitted mesh (:mod:`bodyshape.refit`): the network's
body moved by the measurement correction and, for fitted clothes, less the allowance. The 20
shape numbers cannot move all 16 measurements exactly as asked; what is left undone, and so
the reported girths, depends on where the refit starts, and so on the capture. Here the
re-captured dressed persons of training/recaptures.py (seed 4244: 30 persons x 8 captures,
through rembg and the page's path; never an evaluation seed; cached in ``--cache``) are refitted
under each variant ``RIDGE:GIRTH_WEIGHT`` (bodyshape.refit.RIDGE and GIRTH_WEIGHT), clothing
declared fitted. Printed: the per-person SD, MAE and bias of chest / waist / hip as reported,
what is left undone of the girths' requested change (mean, SD) and of the other measurements'
(mean absolute), mm, and the refit's seconds a body (read it on an idle machine).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bodyshape.report import slashed

GIRTHS = ("chest", "waist", "hip")


def main() -> None:
    import bodyshape.refit
    from bodyshape.correction import load_correction, requested_change
    from bodyshape.measurements import MEASUREMENT_NAMES
    from bodyshape.paths import WEIGHTS_DIR
    from bodyshape.uncertainty import IntervalModel, load_intervals
    from training.recaptures import JUDGE_CAPTURES, JUDGE_SEED, person_sd, recapture_set

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="+", default=["1e-3:1", "1e-4:1", "1e-3:3", "1e-4:3"],
                   help="RIDGE:GIRTH_WEIGHT pairs")
    p.add_argument("--intervals", type=Path, default=None, help="an intervals.json whose allowance to ask for "
                   "(default: the shipped one)")
    p.add_argument("--cache", type=Path, default=Path("runs/correction"))
    a = p.parse_args()
    z = recapture_set(WEIGHTS_DIR / "fused.safetensors", *JUDGE_CAPTURES, JUDGE_SEED, a.cache)
    intervals = IntervalModel.load(a.intervals) if a.intervals else load_intervals(WEIGHTS_DIR)
    change = requested_change(z["shape"], z["height"], z["point"], z["front"], z["side"], load_correction(WEIGHTS_DIR, "fitted"),
                              intervals.allowance("fitted"))  # fmt: skip
    target = z["point"] + change
    g = [MEASUREMENT_NAMES.index(n) for n in GIRTHS]
    others = [j for j, n in enumerate(MEASUREMENT_NAMES) if n not in (*GIRTHS, "height")]

    print(f"{len(z['height'])} captures of {len(np.unique(z['person']))} persons (seed {JUDGE_SEED}), clothing fitted, "
          f"{bodyshape.refit.STEPS} Gauss-Newton steps; chest / waist / hip, mm\n")  # fmt: skip
    print("| ridge | girth weight | per-person SD | MAE | bias | girths left undone: mean | SD "
          "| others left undone: mean abs | s a body |\n|---|---|---|---|---|---|---|---|---|")
    for variant in a.variants:
        ridge, weight = (float(v) for v in variant.split(":"))
        bodyshape.refit.RIDGE, bodyshape.refit.GIRTH_WEIGHT = ridge, weight
        start = time.perf_counter()
        _, _, got = bodyshape.refit.refitted(z["shape"], z["height"], change, progress=variant)
        seconds = (time.perf_counter() - start) / len(got)
        err, left = 1000 * (got - z["truth"])[:, g], 1000 * (got - target)
        print(f"| {ridge:g} | {weight:g} | {slashed(person_sd(1000 * got[:, g], z['person']))} | {slashed(np.abs(err).mean(0))} | "
              f"{slashed(err.mean(0), '+.1f')} | {slashed(left[:, g].mean(0), '+.1f')} | {slashed(left[:, g].std(0))} | "
              f"{np.abs(left[:, others]).mean():.1f} | {seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()
