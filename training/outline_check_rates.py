"""How often the side_outline capture check warns on the stored test sets and evaluation splits.

    python -m training.outline_check_rates      # seconds; the sets must exist (docs/evaluation.md)

The table of docs/capture.md ("Something behind the person, cut out with them"): one row per
stored set, the share of side silhouettes on which :func:`bodyshape.capture.check_segmentation`
warns, and which rows of the repeatability split it flags. Read only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    from bodyshape.capture import check_segmentation

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", type=Path, nargs="+", default=[Path("data/test"), Path("data/test_strong")])
    p.add_argument("--eval", type=Path, default=Path("data/eval"), help="the cached evaluation splits")
    a = p.parse_args()
    sources = {str(d): sorted(d.glob("shard_*.npz")) for d in a.sets}
    sources.update({f.stem: [f] for f in sorted(a.eval.glob("*.npz"))})
    print("| set | side silhouettes | warn | rows flagged |\n|---|---|---|---|")
    for name, files in sources.items():
        if not files:
            continue
        side = np.concatenate([np.load(f)["side"] for f in files])
        flagged = np.flatnonzero([not check_segmentation(s).passed for s in side])
        rows = ", ".join(map(str, flagged[:10])) + (" ..." if len(flagged) > 10 else "")
        print(f"| {name} | {len(side)} | {len(flagged) / len(side):.1%} | {rows} |")


if __name__ == "__main__":
    main()
