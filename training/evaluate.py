"""Evaluation of the shipped models on held-out synthetic test sets (different seeds).

For each model (front-only, side-only, fused-staged, fused-from-scratch):
- mean per-vertex error (mm) of the rest-pose mesh, both meshes scaled to the true height
  (as the product does with the typed height), over all 13,718 vertices;
- mean absolute error (mm) of every measurement;
- the side-view usage test for fused models: the same errors when each side silhouette is
  replaced by another person's (a model that ignores the side barely changes);
- the errors on a test set with stronger mask noise than training used.

Deterministic: the same weights and test sets give the same table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bodyshape.checkpoint import load_model, read_metadata
from bodyshape.measurements import MEASUREMENT_NAMES, get_measurer
from bodyshape.reconstruct import mesh_from_shape
from training.batches import predict
from training.config import FRONT, FUSED_SCRATCH, FUSED_STAGED, SIDE, WEIGHT_NAMES
from training.dataset import SilhouetteDataset, load_dataset

#: Row name -> weights file. The two "equal budget" fused models are the controlled comparison of
#: staged vs from-scratch training (same total compute, 2 CPU cores, runs/main; their front/side
#: encoders came from that run's CPU-trained single-view models). The shipped front, side and fused
#: models come from the one-GPU recipe (`bodyshape train-gpu`, one H200, 8 minutes): the same staged
#: recipe, with far more samples seen.
MODELS = {
    "front-only (GPU recipe)": WEIGHT_NAMES[FRONT],
    "side-only (GPU recipe)": WEIGHT_NAMES[SIDE],
    "fused, staged (equal budget)": "fused_equal_budget",  # a fused_staged shipped under another name
    "fused, from scratch (equal budget)": WEIGHT_NAMES[FUSED_SCRATCH],
    "fused, staged, GPU recipe (shipped)": WEIGHT_NAMES[FUSED_STAGED],
}
SHOWN = ("chest", "waist", "hip", "neck", "thigh", "upper_arm", "inseam", "shoulder")


def errors(pred_shape: np.ndarray, ds: SilhouetteDataset, true_vertices: np.ndarray, true_meas: np.ndarray) -> dict:
    """Per-vertex error and measurement MAE (mm) of predicted shapes against the truth.

    True measurements are recomputed from the true meshes with the current code (not read
    from the dataset), so a change of a measurement definition cannot bias the table.
    """
    verts = np.concatenate([mesh_from_shape(pred_shape[i : i + 100], ds.height[i : i + 100]) for i in range(0, len(ds), 100)])
    vertex_mm = float(np.linalg.norm(verts - true_vertices, axis=-1).mean() * 1000)
    meas = get_measurer().batch(verts)
    mae = np.abs(meas - true_meas).mean(0) * 1000
    out = {"vertex_mm": vertex_mm, **{k: float(v) for k, v in zip(MEASUREMENT_NAMES, mae, strict=True)}}
    out["girths_mean_mm"] = float(np.mean([out[g] for g in ("chest", "waist", "hip")]))
    return out


def true_meshes(ds: SilhouetteDataset) -> np.ndarray:
    return np.concatenate([mesh_from_shape(ds.shape[i : i + 100], ds.height[i : i + 100]) for i in range(0, len(ds), 100)])


def evaluate(weights_dir: Path, test: Path, strong: Path | None, n: int) -> dict:
    ds = load_dataset(test, limit=n)
    truth = true_meshes(ds)
    truth_meas = get_measurer().batch(truth)
    results: dict = {"test_set": str(test), "n": len(ds), "models": {}}
    swapped_side = ds.unpack(np.roll(ds.side, 1, axis=0))
    ds_strong = load_dataset(strong, limit=n) if strong else None
    truth_strong = true_meshes(ds_strong) if ds_strong is not None else None
    truth_strong_meas = get_measurer().batch(truth_strong) if ds_strong is not None else None
    for name, file in MODELS.items():
        path = weights_dir / f"{file}.safetensors"
        if not path.exists():
            print(f"skipping {name}: {path} not found")
            continue
        _, info = read_metadata(path)
        model = load_model(path)
        r = {"file": path.name, "trained": info.get("trained", False), "test": errors(predict(model, ds), ds, truth, truth_meas)}
        if "side" in model.cfg.views and "front" in model.cfg.views:
            r["side_swapped"] = errors(predict(model, ds, side_override=swapped_side), ds, truth, truth_meas)
        if ds_strong is not None:
            r["strong_noise"] = errors(predict(model, ds_strong), ds_strong, truth_strong, truth_strong_meas)
        results["models"][name] = r
        print(name, json.dumps({k: round(v, 1) for k, v in r["test"].items()}))
    return results


def markdown(results: dict) -> str:
    cols = ["vertex_mm", *SHOWN]
    head = "| model | per-vertex | " + " | ".join(c.replace("_", " ") for c in SHOWN) + " |"
    lines = [
        f"Held-out synthetic test set: {results['n']} bodies ({results['test_set']}), height given. "
        "Mean per-vertex error and mean absolute error per measurement, **mm**.",
        "",
        head,
        "|" + "---|" * (len(cols) + 1),
    ]
    for name, r in results["models"].items():
        lines.append(f"| {name} | " + " | ".join(f"{r['test'][c]:.1f}" for c in cols) + " |")
    lines += ["", "Side-view usage test (fused models): each side silhouette replaced by another person's.", "",
              "| model | per-vertex | chest | waist | hip | per-vertex change | chest+waist+hip change |", "|---|---|---|---|---|---|---|"]
    for name, r in results["models"].items():
        if "side_swapped" in r:
            s, t = r["side_swapped"], r["test"]
            lines.append(
                f"| {name} | {s['vertex_mm']:.1f} | {s['chest']:.1f} | {s['waist']:.1f} | {s['hip']:.1f} | "
                f"{s['vertex_mm'] / t['vertex_mm']:.2f}x | {s['girths_mean_mm'] / t['girths_mean_mm']:.2f}x |"
            )
    if any("strong_noise" in r for r in results["models"].values()):
        lines += ["", "Stronger mask noise than training (erosion/dilation up to 5 px, more blobs, holes, ragged edges):", "",
                  "| model | per-vertex | chest | waist | hip |", "|---|---|---|---|---|"]
        for name, r in results["models"].items():
            if "strong_noise" in r:
                s = r["strong_noise"]
                lines.append(f"| {name} | {s['vertex_mm']:.1f} | {s['chest']:.1f} | {s['waist']:.1f} | {s['hip']:.1f} |")
    return "\n".join(lines) + "\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from bodyshape.paths import WEIGHTS_DIR

    p.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    p.add_argument("--test", type=Path, default=Path("data/test"))
    p.add_argument("--strong", default="data/test_strong",
                   help="stronger-noise test set ('' to skip; skipped with a message when it does not exist)")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--out", type=Path, default=Path("docs/evaluation.md"))


def strong_test_set(arg: str) -> Path | None:
    """The ``--strong`` folder, or None: '' means skip (``Path('')`` would be the current folder)."""
    if not arg:
        return None
    if not Path(arg).exists():
        print(f"skipping the stronger-noise test: {arg} not found")
        return None
    return Path(arg)


def run(args: argparse.Namespace) -> int:
    res = evaluate(args.weights, args.test, strong_test_set(args.strong), args.n)
    md = markdown(res)
    print(md)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("# Evaluation\n\nProduced by `bodyshape evaluate`.\n\n" + md)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    print(f"wrote {args.out}")
    return 0

