"""How often the side_outline capture check warns on the stored test sets and evaluation splits.

    python -m training.outline_check_rates           # seconds; the sets must exist (docs/evaluation.md)
    python -m training.outline_check_rates --errors  # + what flagged captures err (~2 min on 2 cores)

The table of docs/capture.md ("Something behind the person, cut out with them"): one row per
stored set, the share of side silhouettes on which :func:`bodyshape.capture.check_segmentation`
warns, and which rows of the repeatability split it flags. With ``--errors``, for each of
``--sets`` the shipped network's four-look mean body (no correction) on the flagged captures and
on the first 200 unflagged ones: chest / waist / hip MAE, mm (whether the check should refuse or
warn). Read only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    from bodyshape.capture import check_segmentation
    from training.dataset import load_dataset

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", type=Path, nargs="+", default=[Path("data/test"), Path("data/test_strong")])
    p.add_argument("--eval", type=Path, default=Path("data/eval"), help="the cached evaluation splits")
    p.add_argument("--errors", action="store_true", help="also what the flagged captures of --sets err")
    a = p.parse_args()

    def flags(side: np.ndarray) -> np.ndarray:
        return np.array([not check_segmentation(s).passed for s in side], bool)

    sets = {str(d): load_dataset(d) for d in a.sets if (d / "manifest.json").exists()}
    found = {name: flags(ds.canvases(ds.side)) for name, ds in sets.items()}
    found.update({f.stem: flags(np.load(f)["side"]) for f in sorted(a.eval.glob("*.npz"))})
    print("| set | side silhouettes | warn | rows flagged |\n|---|---|---|---|")
    for name, flag in found.items():
        flagged = np.flatnonzero(flag)
        rows = ", ".join(map(str, flagged[:10])) + (" ..." if len(flagged) > 10 else "")
        print(f"| {name} | {len(flag)} | {len(flagged) / len(flag):.1%} | {rows} |")
    if a.errors:
        print("\n| set | captures | chest / waist / hip MAE, mm | bias, mm |\n|---|---|---|---|")
        for name, ds in sets.items():
            flagged_errors(name, ds, found[name])


def flagged_errors(name: str, ds, flag: np.ndarray, n_unflagged: int = 200) -> None:
    """Print the network's girth errors on the flagged (``flag``) and on unflagged captures of a stored set."""
    from bodyshape.measurements import MEASUREMENT_NAMES, get_measurer
    from bodyshape.paths import WEIGHTS_DIR
    from training.evaluate import network_bodies, true_meshes

    cols = [MEASUREMENT_NAMES.index(g) for g in ("chest", "waist", "hip")]
    unflagged = np.flatnonzero(~flag)[:n_unflagged]
    for label, rows in (("flagged", np.flatnonzero(flag)), ("not flagged", unflagged)):
        if len(rows) == 0:
            continue
        sub = ds.select(rows)  # only these rows are meshed and read
        truth = get_measurer().batch(true_meshes(ds, rows))
        raw, _, _ = network_bodies(WEIGHTS_DIR / "fused.safetensors", sub.canvases(sub.front), sub.canvases(sub.side),
                                   sub.height)  # fmt: skip
        err = (raw - truth)[:, cols] * 1000
        mae = " / ".join(f"{v:.0f}" for v in np.abs(err).mean(0))
        bias = " / ".join(f"{v:+.0f}" for v in err.mean(0))
        print(f"| {name}, {label} | {len(rows)} | {mae} | {bias} |")


if __name__ == "__main__":
    main()
