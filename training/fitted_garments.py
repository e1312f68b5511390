"""Does the fitted-clothing correction hold for garments it was not fitted on?

    python -m training.fitted_garments                 # ~10 min on 2 cores
    python -m training.fitted_garments --bodies 60 --seed 4260

The fitted-clothing correction (``correction_fitted.safetensors``) was fine-tuned on bodies whose
cloth runs from a neckline 0.16-0.22 of the height below the top of the head to a hem at
0.52-0.70 (:data:`training.generate.CLOTHED_TOP`, :data:`training.generate.CLOTHED_BOTTOM`); the
dressed evaluation splits use 0.19-0.60. A correction that had learned to read one garment's hem
would fail on another. Here the same bodies (their own seed: none of the training, calibration,
evaluation or re-capture seeds) are dressed in garments inside and outside that range, photographed
as the dressed photo split photographs them (through rembg and the page's normalisation), and
reported as the page reports *fitted* clothing, with the general correction and the allowance
shipped before (``--before``, an ``intervals.json`` of that correction) and with the fitted
correction and its allowance (the shipped files). Chest / waist / hip MAE (bias), mm.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

#: Garments: (label, the rows the cloth covers, shares of the height from the top).
GARMENTS: tuple[tuple[str, tuple[float, float]], ...] = (
    ("the dressed splits' (0.19-0.60)", (0.19, 0.60)),
    ("longer shorts (0.19-0.75), hem below the fitted range", (0.19, 0.75)),
    ("a top and briefs (0.19-0.48), hem above the crotch and the fitted range", (0.19, 0.48)),
    ("high neck, long (0.12-0.72), both ends outside", (0.12, 0.72)),
)


def main() -> None:
    from tqdm import tqdm

    from bodyshape.body_model import get_body_model
    from bodyshape.correction import MeasurementCorrection, load_correction, reported_bodies
    from bodyshape.measurements import MEASUREMENT_NAMES, get_measurer
    from bodyshape.paths import WEIGHTS_DIR
    from bodyshape.report import slashed
    from bodyshape.uncertainty import IntervalModel, load_intervals
    from demo.synthetic import compose_photo, render_masks
    from training.evaluate import network_bodies
    from training.splits import dress, page_silhouettes

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bodies", type=int, default=60)
    p.add_argument("--seed", type=int, default=4260)
    p.add_argument("--before", type=Path, required=True,
                   help="intervals.json holding the allowance used with the general correction "
                        "(e.g. `git show f56c770:bodyshape/weights/intervals.json > /tmp/before.json`)")
    p.add_argument("--fitted", type=Path, default=None, help="a fitted-clothing correction (default: the shipped one)")
    a = p.parse_args()

    weights = WEIGHTS_DIR / "fused.safetensors"
    shapes = get_body_model().sample_shapes(a.bodies, seed=a.seed)
    truth = get_measurer().batch(get_body_model().forward(shapes).rest_vertices)
    heights = truth[:, MEASUREMENT_NAMES.index("height")].astype(np.float32)
    fitted = MeasurementCorrection.load(a.fitted) if a.fitted else load_correction(clothing="fitted")
    ways = {"general correction + its allowance (before)": (load_correction(), IntervalModel.load(a.before).allowance("fitted")),
            "fitted-clothing correction + its allowance": (fitted, load_intervals().allowance("fitted"))}  # fmt: skip
    g = [MEASUREMENT_NAMES.index(n) for n in ("chest", "waist", "hip")]
    masks = [render_masks(s) for s in tqdm(shapes, desc="render", unit="body")]
    print(f"{a.bodies} bodies of seed {a.seed}, dressed photos as the photo split takes them; chest / waist / hip, mm\n")
    print("| garment | " + " | ".join(f"{w}: MAE (bias)" for w in ways) + " |\n|---|" + "---|" * len(ways))
    for k, (label, rows) in enumerate(GARMENTS):
        rng = np.random.default_rng(np.random.SeedSequence([a.seed, 11, k]))
        fronts, sides = [], []
        for pair in tqdm(masks, desc=label[:24], unit="body"):
            dressed = [dress(m, view, rng, rows) for m, view in zip(pair, ("front", "side"), strict=True)]
            f, s = page_silhouettes(tuple(compose_photo(m, rng, body_frac=rng.uniform(0.65, 0.9)) for m in dressed))
            fronts.append(f)
            sides.append(s)
        front, side = np.stack(fronts), np.stack(sides)
        point, _, shape = network_bodies(weights, front, side, heights)
        cells = []
        for correction, allowance in ways.values():
            _, _, got = reported_bodies(shape, heights, point, front, side, correction, allowance)
            err = 1000 * (got - truth)[:, g]
            cells.append(f"{slashed(np.abs(err).mean(0))} ({slashed(err.mean(0), '+.1f')})")
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
