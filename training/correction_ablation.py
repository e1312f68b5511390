"""The measurement correction's choices, judged on the calibration splits (never the evaluation
splits): the table "Chosen on the calibration splits" in docs/evaluation.md.

    bodyshape fit-correction                      # fills runs/correction with the training rows' features
    python -m training.correction_ablation        # ~40 min on 2 cores (the calibration splits' features, then the fits)
    python -m training.correction_ablation --files A.safetensors B.safetensors   # saved corrections, side by side
    python -m training.correction_ablation --weights runs/X/weights --cache runs/correction_X --files runs/X/weights/correction.safetensors
                                                  # a candidate network, alone and with its own correction

Chest / waist / hip MAE (bias in brackets), mm, of the corrected measurements before the refit;
the last column, the per-person SD of the same, on dressed persons re-captured 8 times each
(training/recaptures.py: seed 4244; the noise variants learn a re-capture's changes from the
persons of seed 4243).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bodyshape.measurements import MEASUREMENT_NAMES
from bodyshape.report import slashed

GIRTHS = [MEASUREMENT_NAMES.index(g) for g in ("chest", "waist", "hip")]
#: Inputs without the outline profile: measurements, shape numbers, height.
NO_PROFILE = len(MEASUREMENT_NAMES) + 20 + 1


def calibration_features(weights: Path, data: Path, cache: Path) -> dict[str, dict[str, np.ndarray]]:
    from bodyshape.correction import correction_inputs
    from bodyshape.uncertainty import file_sha256
    from training.calibrate_intervals import CALIBRATION_SPLITS
    from training.evaluate import predict_measurements
    from training.splits import cache_version, load_split

    out = {}
    cache.mkdir(parents=True, exist_ok=True)
    for name, (n, seed) in CALIBRATION_SPLITS.items():
        # the split's canvases (format, segmentation) and the network they were read with
        path = cache / f"calib_{name}_{cache_version(name)}_{file_sha256(weights)[:12]}.npz"
        if not path.exists():
            split = load_split(name, data, n=n, seed=seed)
            p = predict_measurements(weights, split)
            np.savez(path, inputs=correction_inputs(p.point, p.shape, split.height, split.front, split.side),
                     point=p.point, truth=split.truth)  # fmt: skip
        with np.load(path) as z:
            out[name] = {k: z[k] for k in z.files}
    return out


def outline_statistics(silhouettes: np.ndarray) -> np.ndarray:
    """A richer outline than :func:`bodyshape.correction.silhouette_profile` (tried, not kept):
    per height band, in body heights, the extent (rightmost minus leftmost body pixel), the
    longest run of body pixels (the torso where the arms stand apart), the number of runs, and
    the left and right edges relative to the body's centre column. (B, H, W) -> (B, 5 * bands)."""
    from bodyshape.correction import PROFILE_LEVELS
    from bodyshape.silhouette import body_pixels

    masks = body_pixels(silhouettes)
    out = np.zeros((len(masks), 5 * PROFILE_LEVELS), np.float32)
    for i, m in enumerate(masks):
        rows = np.flatnonzero(m.any(1))
        s = m[rows[0] : rows[-1] + 1].astype(np.int8)
        h, any_row = len(s), s.any(1)
        left = np.where(any_row, s.argmax(1), 0)
        right = np.where(any_row, s.shape[1] - s[:, ::-1].argmax(1), 0)
        d = np.diff(np.pad(s, ((0, 0), (1, 1))), axis=1)
        longest = np.array([(np.flatnonzero(r == -1) - np.flatnonzero(r == 1)).max(initial=0) for r in d])
        cx = (np.arange(s.shape[1]) * s).sum() / s.sum()
        per_row = [(right - left) / h, longest / h, (d == 1).sum(1).astype(float), (left - cx) / h, (right - cx) / h]
        edges = np.linspace(0, h, PROFILE_LEVELS + 1).astype(int)
        out[i] = np.concatenate([[f[a : max(b, a + 1)].mean() for a, b in zip(edges[:-1], edges[1:], strict=True)]
                                 for f in per_row])  # fmt: skip
    return out


def with_outline_statistics(sets: dict[str, dict[str, np.ndarray]], silhouettes, cache: Path) -> None:
    """Add ``rich`` (the inputs followed by :func:`outline_statistics` of front and side) to each
    set; ``silhouettes(name)`` -> (front, side). Cached in ``cache``."""
    for name, z in sets.items():
        path = cache / f"outline_statistics_{name}.npy"
        if not path.exists():
            front, side = silhouettes(name)
            np.save(path, np.hstack([outline_statistics(front), outline_statistics(side)]))
        extra = np.load(path)
        z["rich"] = np.hstack([z["inputs"][: len(extra)], extra]).astype(np.float32)


def fit(train: dict, rows: int, members: int, hidden: int, columns: int | None = None, ridge: float | None = None,
        key: str = "inputs", noise: float = 0.0, deviations: np.ndarray | None = None,
        moving_target: bool = False, epochs: int = 60):  # fmt: skip
    """-> (a function (set) -> corrected-minus-point, metres, the fitted
    :class:`bodyshape.correction.MeasurementCorrection` where it is one: an MLP on every input);
    ``key``: which inputs of the set;
    ``noise``: the scale of the re-capture ``deviations`` added to the training rows, with the
    target moving with the measurements' deviations or not (``moving_target``;
    :func:`training.fit_correction.fit_member`)."""
    import torch

    from bodyshape.correction import MeasurementCorrection
    from training.fit_correction import HOLDOUT, fit_member, noise_pool

    columns = columns or train[key].shape[1]
    x0 = train[key][:rows, :columns].astype(np.float32)
    y = ((train["truth"] - train["point"])[:rows] * 100).astype(np.float32)
    mean, std = x0.mean(0), x0.std(0) + 1e-6
    x = (x0 - mean) / std
    if ridge is not None:
        a = np.hstack([x, np.ones((len(x), 1), np.float32)]).astype(np.float64)
        reg = ridge * np.eye(a.shape[1])
        reg[-1, -1] = 0.0
        w = np.linalg.solve(a.T @ a + reg, a.T @ y)
        return (lambda z: np.hstack([(z[key][:, :columns] - mean) / std, np.ones((len(z[key]), 1))]) @ w / 100), None
    holdout = np.random.default_rng(0).random(len(x)) < HOLDOUT
    pool, shift = (None, None) if deviations is None else noise_pool(deviations, std, moving_target, columns)
    nets = [fit_member(x, y, holdout, hidden, epochs, k, pool, noise, shift)[0] for k in range(members)]

    def apply(z: dict) -> np.ndarray:
        with torch.no_grad():
            t = torch.from_numpy(((z[key][:, :columns] - mean) / std).astype(np.float32))
            return torch.stack([n(t) for n in nets]).mean(0).numpy() / 100

    whole = key == "inputs" and columns == train[key].shape[1]
    return apply, (MeasurementCorrection(nets, mean, std, {"variant": True}) if whole else None)


VARIANTS = {
    "linear (ridge, α = 100) on the same inputs, 5,000 rows": dict(rows=5000, members=1, hidden=0, ridge=100.0),
    "MLP without the outline profile, 5,000 rows": dict(rows=5000, columns=NO_PROFILE, members=1, hidden=128),
    "MLP, 5,000 rows": dict(rows=5000, members=1, hidden=128),
    "MLP, 15,000 rows, one network": dict(rows=15000, members=1, hidden=128),
    "MLP, 15,000 rows, one network, richer outline (`outline_statistics`)": dict(rows=15000, members=1, hidden=128, key="rich"),
    "MLP, 15,000 rows, 3 networks": dict(rows=15000, members=3, hidden=128),
    "MLP, 15,000 rows, 3 networks of 256": dict(rows=15000, members=3, hidden=256),
    "MLP, 30,000 rows, 3 networks": dict(rows=30000, members=3, hidden=128),
    "MLP, 15,000 rows, 3 networks, re-capture noise × 1, the correction held": dict(rows=15000, members=3, hidden=128,
                                                                                   noise=1.0),
    "MLP, 15,000 rows, 3 networks, re-capture noise × 1, the corrected numbers held": dict(
        rows=15000, members=3, hidden=128, noise=1.0, moving_target=True),
    "MLP, 15,000 rows, 3 networks, re-capture noise × 2, the corrected numbers held": dict(
        rows=15000, members=3, hidden=128, noise=2.0, moving_target=True),
    "MLP, 15,000 rows, 3 networks, re-capture noise × 3, the corrected numbers held": dict(
        rows=15000, members=3, hidden=128, noise=3.0, moving_target=True),
    "MLP, 30,000 rows, 3 networks, re-capture noise × 2, the corrected numbers held": dict(
        rows=30000, members=3, hidden=128, noise=2.0, moving_target=True),
    "MLP, 30,000 rows, 3 networks, re-capture noise × 2, the corrected numbers held, 120 epochs": dict(
        rows=30000, members=3, hidden=128, noise=2.0, moving_target=True, epochs=120),
}

#: Training rows given the richer outline.
RICH_ROWS = 15000


def cells(calib: dict[str, dict[str, np.ndarray]], change) -> str:
    """One table row's cells: chest / waist / hip MAE (bias) of the corrected measurements,
    mm, per calibration split, and for the re-captured persons (``recaptures``) the per-person
    SD; ``change``: set -> corrected-minus-point, metres."""
    from training.recaptures import person_sd

    out = []
    for name, z in calib.items():
        corrected = (z["point"] + change(z))[:, GIRTHS] * 1000
        if name == "recaptures":
            out.append(slashed(person_sd(corrected, z["person"])))
            continue
        e = corrected - z["truth"][:, GIRTHS] * 1000
        out.append(f"{slashed(np.abs(e).mean(0))} ({slashed(e.mean(0), '+.1f')})")
    return " | ".join(out)


def print_head(calib: dict[str, dict[str, np.ndarray]]) -> None:
    """The table's header and its first row: the network's measurements, uncorrected."""
    print("| correction | " + " | ".join(calib) + " |")
    print("|---|" + "---|" * len(calib))
    print("| none (the network, four looks) | " + cells(calib, lambda z: 0.0) + " |", flush=True)


def judge_files(files: list[Path], calib: dict[str, dict[str, np.ndarray]], reported: bool = False,
                weights_dir: Path | None = None, calib_dir: Path = Path("data/calib")) -> None:
    """The table's rows for saved corrections (e.g. the one before a refit and the refit); with
    ``reported``, then the re-captured persons' numbers as the page reports them."""
    from bodyshape.correction import MeasurementCorrection

    print_head(calib)
    models = {str(path): MeasurementCorrection.load(path) for path in files}
    for path, model in models.items():
        print(f"| {path} ({model.info.get('trained_on', '?')}) | "
              + cells(calib, lambda z, m=model: m.change(z["inputs"])) + " |", flush=True)
    if reported:
        judge_reported(calib["recaptures"], {"none": None, **models}, weights_dir, calib_dir)


def judge_reported(z: dict[str, np.ndarray], corrections: dict, weights_dir: Path | None = None,
                   calib_dir: Path = Path("data/calib")) -> None:
    """Chest / waist / hip of re-captured dressed persons as the page would report them with
    each correction for clothing declared fitted (the refit), per correction: per-person SD,
    MAE, bias, mm. Each gets the allowance `bodyshape calibrate-intervals` would fit through it on
    the dressed calibration rows (cached in ``calib_dir``; about 3 min a correction): an
    allowance belongs to the correction it was fitted through (since 2026-12-05 the shipped one
    is fitted clothing's own correction's, a few mm, not the general one's 6-7 cm)."""
    from bodyshape.clothing import fit_allowance
    from bodyshape.correction import correction_inputs, reported_bodies
    from bodyshape.paths import WEIGHTS_DIR
    from training.calibrate_intervals import dressed_rows
    from training.evaluate import predict_measurements
    from training.recaptures import person_sd

    weights = Path(weights_dir or WEIGHTS_DIR) / "fused.safetensors"
    rows = dressed_rows(weights, calib_dir)
    raw = predict_measurements(weights, rows)  # the network's bodies, before correction and allowance
    inputs = correction_inputs(raw.point, raw.shape, rows.height, rows.front, rows.side)
    print("\n| correction | allowance through it | per-person SD, as reported | MAE | bias |\n|---|---|---|---|---|")
    for label, model in corrections.items():
        change = None if model is None else model.change(inputs)
        allowance, _ = fit_allowance(raw.shape, rows.height, raw.point, rows.truth, corrected=change)
        _, _, point = reported_bodies(z["shape"], z["height"], z["point"], z["front"], z["side"], model, allowance)
        got, err = point[:, GIRTHS] * 1000, (point - z["truth"])[:, GIRTHS] * 1000
        print(f"| {label} | {slashed(1000 * allowance[GIRTHS])} | " + " | ".join(slashed(x, fmt) for x, fmt in (
            (person_sd(got, z["person"]), ".1f"), (np.abs(err).mean(0), ".1f"), (err.mean(0), "+.1f"))) + " |", flush=True)


def main() -> None:
    from bodyshape.paths import WEIGHTS_DIR
    from training.calibrate_intervals import CALIBRATION_SPLITS
    from training.dataset import load_dataset
    from training.fit_correction import cached_features
    from training.recaptures import (
        JUDGE_CAPTURES,
        JUDGE_SEED,
        NOISE_CAPTURES,
        NOISE_SEED,
        recapture_deviations,
        recapture_set,
    )
    from training.splits import load_split

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, default=WEIGHTS_DIR,
                   help="folder with the fused.safetensors whose measurements are corrected (a candidate network: "
                        "its own --cache, since the training rows' features are the network's)")
    p.add_argument("--train", type=Path, default=Path("data/train_wide"))
    p.add_argument("--cache", type=Path, default=Path("runs/correction"))
    p.add_argument("--calib", type=Path, default=Path("data/calib"))
    p.add_argument("--only", nargs="*", default=None, help="rows whose label contains one of these (default: all)")
    p.add_argument("--files", nargs="*", type=Path, default=None,
                   help="judge these saved corrections (correction.safetensors files) instead of fitting the variants")
    p.add_argument("--reported", action="store_true",
                   help="also the re-captured persons as the page reports them (an allowance fitted through each, the refit; "
                        "~5 min a correction)")
    a = p.parse_args()
    variants = {k: v for k, v in VARIANTS.items() if not a.only or any(o in k for o in a.only)}
    weights = a.weights / "fused.safetensors"
    if a.files is not None:
        judge_files(a.files, {**calibration_features(weights, a.calib, a.cache),
                              "recaptures": recapture_set(weights, *JUDGE_CAPTURES, JUDGE_SEED, a.cache)}, a.reported, a.weights,
                    a.calib)  # fmt: skip
        return
    # the training rows' features the rows need (`bodyshape fit-correction --n` caches them)
    train = cached_features(weights, a.train, max(v["rows"] for v in variants.values()), a.cache)
    calib = calibration_features(weights, a.calib, a.cache)
    source = recapture_set(weights, *NOISE_CAPTURES, NOISE_SEED, a.cache)
    deviations = recapture_deviations(source["inputs"], source["person"])
    judged = {**calib, "recaptures": recapture_set(weights, *JUDGE_CAPTURES, JUDGE_SEED, a.cache)}

    def silhouettes(name: str) -> tuple[np.ndarray, np.ndarray]:
        if name == "train":
            part = load_dataset(a.train, limit=RICH_ROWS)
            return part.canvases(part.front), part.canvases(part.side)
        split = load_split(name, a.calib, *CALIBRATION_SPLITS[name])
        return split.front, split.side

    if any(v.get("key") == "rich" for v in variants.values()):
        with_outline_statistics({"train": train, **calib}, silhouettes, a.cache)

    print_head(judged)
    fitted = {}
    for label, v in variants.items():
        apply, fitted[label] = fit(train, **v, deviations=deviations)
        print(f"| {label} | " + cells(judged, apply) + " |", flush=True)
    if a.reported:
        from bodyshape.correction import load_correction

        judge_reported(judged["recaptures"], {"none": None, "its own (--weights)": load_correction(a.weights),
                                              **{k: m for k, m in fitted.items() if m is not None}}, a.weights, a.calib)  # fmt: skip


if __name__ == "__main__":
    main()
