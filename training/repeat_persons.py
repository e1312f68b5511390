"""Each person of the repeatability split: how much their numbers scatter, and where.

    python -m training.repeat_persons          # ~6 min on 2 cores

The evaluation's repeatability split (``data/eval``, generated there when missing) photographs
30 dressed people 10 times each, re-framed. ``bodyshape evaluate`` reports the per-person SD
averaged; here each person's row: the height, the per-person SD of chest / waist / hip as the
page reports them (clothing declared *fitted*, the correction, the refit) and of the network's
mean body before the correction and the refit, the person's mean error, how many of the 10
captures fail a capture check, and the capture that moves the chest most from the person's
median. One person's failed capture or a measurement that jumps between two levels shows here
as one row far above the others. Read only: nothing is fitted on this split.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

GIRTHS = ("chest", "waist", "hip")


def main() -> None:
    from bodyshape.capture import check_masks
    from bodyshape.correction import load_correction
    from bodyshape.measurements import MEASUREMENT_NAMES
    from bodyshape.paths import WEIGHTS_DIR
    from bodyshape.uncertainty import load_intervals
    from training.evaluate import predict_by_clothing
    from training.splits import REPEATABILITY, SPLIT_CLOTHING, load_split

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("data/eval"), help="where the evaluation splits are cached")
    a = p.parse_args()
    split = load_split(REPEATABILITY, a.data)
    clothing = SPLIT_CLOTHING[REPEATABILITY]
    pred = predict_by_clothing(WEIGHTS_DIR / "fused.safetensors", split, load_intervals(), (clothing,),
                               {clothing: load_correction(WEIGHTS_DIR, clothing)})[clothing]  # fmt: skip
    # as the page judges a capture (the framing needs the photos): the pose and segmentation checks
    warned = np.array([any(not c.passed for c in check_masks(f, s)) for f, s in zip(split.front, split.side, strict=True)])
    g = [MEASUREMENT_NAMES.index(n) for n in GIRTHS]
    chest = MEASUREMENT_NAMES.index("chest")
    mm = " / ".join

    print("| person | height | SD reported | SD network | mean error | captures warned | chest's largest move (capture) |")
    print("|---|---|---|---|---|---|---|")
    sds, sds_net = [], []
    for person in np.unique(split.person):
        rows = np.flatnonzero(split.person == person)
        reported, network = pred.point[rows][:, g] * 1000, pred.network[rows][:, g] * 1000
        sd, sd_net = reported.std(0, ddof=1), network.std(0, ddof=1)
        sds.append(sd)
        sds_net.append(sd_net)
        err = (pred.point[rows][:, g] - split.truth[rows][:, g]).mean(0) * 1000
        move = pred.point[rows, chest] * 1000 - np.median(pred.point[rows, chest] * 1000)
        worst = int(np.argmax(np.abs(move)))
        print(f"| {person} | {split.height[rows[0]]:.2f} | {mm(f'{x:.1f}' for x in sd)} | {mm(f'{x:.1f}' for x in sd_net)} | "
              f"{mm(f'{x:+.0f}' for x in err)} | {int(warned[rows].sum())} | {move[worst]:+.0f} ({worst}) |")
    print()
    for what, x in (("as reported", np.array(sds)), ("the network's mean body", np.array(sds_net))):
        print(f"per-person SD {what}, chest / waist / hip, mm: mean {mm(f'{v:.1f}' for v in x.mean(0))}, "
              f"median {mm(f'{v:.1f}' for v in np.median(x, 0))}, largest {mm(f'{v:.1f}' for v in x.max(0))}")


if __name__ == "__main__":
    main()
