"""The measurement correction's choices, judged on the calibration splits (never the evaluation
splits): the table "Chosen on the calibration splits" in docs/evaluation.md.

    bodyshape fit-correction                      # fills runs/correction with the training rows' features
    python -m training.correction_ablation        # ~15 min on 2 cores (the calibration splits' features, then 9 fits)

Chest / waist / hip MAE (bias), mm, of the corrected measurements before the refit.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bodyshape.measurements import MEASUREMENT_NAMES

GIRTHS = [MEASUREMENT_NAMES.index(g) for g in ("chest", "waist", "hip")]
#: Inputs without the outline profile: measurements, shape numbers, height.
NO_PROFILE = len(MEASUREMENT_NAMES) + 20 + 1


def calibration_features(weights: Path, data: Path, cache: Path) -> dict[str, dict[str, np.ndarray]]:
    from bodyshape.correction import correction_inputs
    from training.calibrate_intervals import CALIBRATION_SPLITS
    from training.evaluate import predict_measurements
    from training.splits import load_split

    out = {}
    for name, (n, seed) in CALIBRATION_SPLITS.items():
        path = cache / f"calib_{name}.npz"
        if not path.exists():
            split = load_split(name, data, n=n, seed=seed)
            p = predict_measurements(weights, split)
            np.savez(path, inputs=correction_inputs(p.point, p.shape, split.height, split.front, split.side),
                     point=p.point, truth=split.truth)  # fmt: skip
        with np.load(path) as z:
            out[name] = {k: z[k] for k in z.files}
    return out


def fit(train: dict, rows: int, columns: int, members: int, hidden: int, ridge: float | None = None):
    """-> a function (inputs) -> corrected-minus-point, metres."""
    import torch

    from training.fit_correction import HOLDOUT, fit_member

    x0 = train["inputs"][:rows, :columns].astype(np.float32)
    y = ((train["truth"] - train["point"])[:rows] * 100).astype(np.float32)
    mean, std = x0.mean(0), x0.std(0) + 1e-6
    x = (x0 - mean) / std
    if ridge is not None:
        a = np.hstack([x, np.ones((len(x), 1), np.float32)]).astype(np.float64)
        reg = ridge * np.eye(a.shape[1])
        reg[-1, -1] = 0.0
        w = np.linalg.solve(a.T @ a + reg, a.T @ y)
        return lambda inp: np.hstack([(inp[:, :columns] - mean) / std, np.ones((len(inp), 1))]) @ w / 100
    holdout = np.random.default_rng(0).random(len(x)) < HOLDOUT
    nets = [fit_member(x, y, holdout, hidden, 60, k)[0] for k in range(members)]

    def apply(inp: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            t = torch.from_numpy(((inp[:, :columns] - mean) / std).astype(np.float32))
            return torch.stack([n(t) for n in nets]).mean(0).numpy() / 100

    return apply


VARIANTS = {
    "linear (ridge, α = 100) on the same inputs, 5,000 rows": dict(rows=5000, columns=None, members=1, hidden=0, ridge=100.0),
    "MLP without the outline profile, 5,000 rows": dict(rows=5000, columns=NO_PROFILE, members=1, hidden=128),
    "MLP, 5,000 rows": dict(rows=5000, columns=None, members=1, hidden=128),
    "MLP, 15,000 rows, one network": dict(rows=15000, columns=None, members=1, hidden=128),
    "MLP, 15,000 rows, 3 networks (shipped)": dict(rows=15000, columns=None, members=3, hidden=128),
    "MLP, 15,000 rows, 3 networks of 256": dict(rows=15000, columns=None, members=3, hidden=256),
}


def main() -> None:
    from bodyshape.paths import WEIGHTS_DIR
    from training.fit_correction import cached_features

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=Path, default=Path("data/train_wide"))
    p.add_argument("--cache", type=Path, default=Path("runs/correction"))
    p.add_argument("--calib", type=Path, default=Path("data/calib"))
    a = p.parse_args()
    weights = WEIGHTS_DIR / "fused.safetensors"
    train = cached_features(weights, a.train, 15000, a.cache)
    calib = calibration_features(weights, a.calib, a.cache)

    def cells(change) -> str:
        out = []
        for z in calib.values():
            e = (z["point"] + change(z["inputs"]) - z["truth"])[:, GIRTHS] * 1000
            out.append(" / ".join(f"{np.abs(e[:, j]).mean():.1f}" for j in range(3)))
        return " | ".join(out)

    print("| correction | " + " | ".join(calib) + " |")
    print("|---|" + "---|" * len(calib))
    print("| none (the network, four looks) | " + cells(lambda inp: 0.0) + " |", flush=True)
    for label, v in VARIANTS.items():
        columns = v["columns"] or train["inputs"].shape[1]
        print(f"| {label} | " + cells(fit(train, v["rows"], columns, v["members"], v["hidden"], v.get("ridge"))) + " |", flush=True)


if __name__ == "__main__":
    main()
