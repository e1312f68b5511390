"""The chest level of definitions version 3 against version 2's, side by side.

    python -m training.chest_level                 # all parts, ~6 min on 2 cores
    python -m training.chest_level --parts truth paths

Version 2 took the chest (and the underbust below it) at the most forward torso point of each
mesh's chest band; version 3 takes it at the bust-point vertices (:func:`bodyshape.measurements.
find_bust_points`). Printed, chest and underbust, mm:

- ``truth``: how the numbers move (version 3 - version 2) on 300 bodies of the training sampler
  (seed 123, the bodies of ``python -m training.landmark_levels``), men and women apart;
- ``paths``: the largest and the median change of the chest between neighbours along straight
  paths (40 steps) between 10 pairs of those men: a jump is a definition that is not a smooth
  function of the body;
- ``network``: the shipped network's mean body (four looks, no correction) against the truth on
  the in-distribution test set (``data/test``), both measured at each level: MAE, bias, p90;
- ``repeat``: the same network on the evaluation's repeatability split (``data/eval``): the SD
  of each person's numbers over the 10 re-framed captures, mean, median and largest.

The evaluation splits are read, never fitted on: nothing here chooses a parameter.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

PARTS = ("truth", "paths", "network", "repeat")


def version2_levels(mm, v: np.ndarray) -> tuple[float, float]:
    """Version 2's bust and underbust heights of one rest mesh (V, 3): the most forward torso
    point between 35% and 85% of the way from the lowest rib up to the shoulder joints."""
    from bodyshape.measurements import BUST_BAND, WAIST_BAND

    v, j, u = mm._frame(v)
    t = v[mm.idx_torso]
    rib = j["spine04"][2] + WAIST_BAND[1] * (j["spine02"][2] - j["spine04"][2])
    shoulder = 0.5 * (j["upperarm01.L"][2] + j["upperarm01.R"][2])
    lo, hi = (rib + f * (shoulder - rib) for f in BUST_BAND)
    band = t[(t[:, 2] > lo) & (t[:, 2] < hi)]
    bust = band[np.argmin(band[:, 1])]
    waist = mm._levels(v, j, u)["waist"]
    return float(bust[2]), mm._breast_fold(t, bust, u, floor=waist + 0.02 * u)


def chest_underbust(meshes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, V, 3) rest meshes -> (N, 2) chest and underbust (m) at version 2's and version 3's levels."""
    from bodyshape.measurements import MEASUREMENT_NAMES, get_measurer, horizontal_girths

    mm = get_measurer()
    v2 = np.array([horizontal_girths(np.asarray(v, np.float64), mm.faces_torso, np.array(version2_levels(mm, v)))
                   for v in meshes])  # fmt: skip
    v3 = mm.batch(np.asarray(meshes, np.float32))[:, [MEASUREMENT_NAMES.index("chest"), MEASUREMENT_NAMES.index("underbust")]]
    return v2, v3


def meshes_of(shapes: np.ndarray, height: np.ndarray, batch: int = 100) -> np.ndarray:
    from bodyshape.reconstruct import mesh_from_shape

    return np.concatenate([mesh_from_shape(shapes[i : i + batch], height[i : i + batch]) for i in range(0, len(height), batch)])


def main() -> None:
    from bodyshape.body_model import get_body_model
    from bodyshape.paths import WEIGHTS_DIR

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    p.add_argument("--test", type=Path, default=Path("data/test"))
    p.add_argument("--eval", type=Path, default=Path("data/eval"))
    a = p.parse_args()
    model, names = get_body_model(), ("chest", "underbust")
    shapes = model.sample_shapes(300, 123)

    if "truth" in a.parts:
        v2, v3 = chest_underbust(model.forward(shapes).rest_vertices)
        d = (v3 - v2) * 1000
        for sex, rows in (("men", shapes[:, 0] < 0.5), ("women", shapes[:, 0] >= 0.5)):
            for k, name in enumerate(names):
                e = d[rows, k]
                print(f"truth {sex} {name}: v3 - v2 mean {e.mean():+.1f}, mean |.| {np.abs(e).mean():.1f}, "
                      f"largest {e[np.argmax(np.abs(e))]:+.0f} mm, over 20 mm {np.mean(np.abs(e) > 20):.0%}")  # fmt: skip

    if "paths" in a.parts:
        men, t = shapes[shapes[:, 0] < 0.5][:11], np.linspace(0, 1, 41)[:, None]
        for k in range(10):
            v2, v3 = chest_underbust(model.forward((1 - t) * men[k] + t * men[k + 1]).rest_vertices)
            row = []
            for label, chest in (("v2", v2[:, 0]), ("v3", v3[:, 0])):
                steps = np.abs(np.diff(chest)) * 1000
                row.append(f"{label} largest {steps.max():5.1f} median {np.median(steps):4.2f}")
            print(f"path {k}: chest step, mm: " + " | ".join(row))

    if "network" in a.parts or "repeat" in a.parts:
        from training.evaluate import network_bodies
        from training.splits import load_split

        weights = WEIGHTS_DIR / "fused.safetensors"
        for part, split in (("network", "in_distribution"), ("repeat", "repeatability")):
            if part not in a.parts:
                continue
            s = load_split(split, a.eval, test_set=a.test)
            _, _, pred = network_bodies(weights, s.front, s.side, s.height)
            p2, p3 = chest_underbust(meshes_of(pred, s.height))
            if part == "network":
                from training.dataset import load_dataset

                ds = load_dataset(a.test, limit=len(s.height))
                t2, t3 = chest_underbust(meshes_of(ds.shape, ds.height))
                for k, name in enumerate(names):
                    for label, e in (("v2", (p2 - t2)[:, k]), ("v3", (p3 - t3)[:, k])):
                        e = e * 1000
                        print(f"in-distribution, network alone, {name} {label}: MAE {np.abs(e).mean():.1f} "
                              f"bias {e.mean():+.1f} p90 {np.percentile(np.abs(e), 90):.1f}")  # fmt: skip
            else:
                for k, name in enumerate(names):
                    for label, r in (("v2", p2[:, k]), ("v3", p3[:, k])):
                        sd = np.array([r[s.person == q].std(ddof=1) * 1000 for q in np.unique(s.person)])
                        print(f"repeatability, network alone, {name} {label}: per-person SD mean {sd.mean():.1f} "
                              f"median {np.median(sd):.1f} largest {sd.max():.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
