"""Where the trunk girths are taken, on bodies of the training sampler: a check of the landmark
levels that docs/measurements.md quotes ("Known issue: the underbust level").

    python -m training.landmark_levels --n 400 --seed 123        # ~30 s on 2 cores

Prints, per sex, how often the breast-fold (underbust) level lies at or below the natural waist
(it should lie above it: ISO 8559-1 takes the underbust directly below the breasts and the waist
between the lowest rib and the hip bone), and how far the natural waist is below the bust point.
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    from tqdm import tqdm

    from bodyshape.body_model import get_body_model
    from bodyshape.measurements import get_measurer

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=400)
    p.add_argument("--seed", type=int, default=123)
    a = p.parse_args()
    model, m = get_body_model(), get_measurer()
    shapes = model.sample_shapes(a.n, a.seed)
    rows = []
    for start in tqdm(range(0, a.n, 50), desc="bodies", unit="batch"):
        for v in model.forward(shapes[start : start + 50]).rest_vertices.astype(np.float64):
            lv = m.levels(v)
            rows.append((lv["underbust"] - lv["waist"], lv["bust"] - lv["waist"]))
    gap, bust = np.array(rows).T * 100
    female = shapes[:, 0] >= 0.5  # Anny's gender phenotype: 0 male, 1 female
    for label, sel in (("male", ~female), ("female", female)):
        print(f"{label} ({sel.sum()} bodies): underbust at or below the natural waist {np.mean(gap[sel] <= 0):.0%}; "
              f"underbust - waist median {np.median(gap[sel]):+.1f} cm (5th percentile {np.percentile(gap[sel], 5):+.1f}); "
              f"bust point - waist median {np.median(bust[sel]):.1f} cm")


if __name__ == "__main__":
    main()
