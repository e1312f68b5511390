"""``bodyshape fit-correction``: fit the measurement correction (bodyshape/correction.py).

    bodyshape generate --pose wide --silhouettes coverage --n 30000 --seed 41 --out data/train_wide    # ~9 min
    bodyshape generate --pose wide --silhouettes coverage --n 30000 --seed 46 --out data/train_wide46  # ~9 min
    bodyshape generate --pose wide --silhouettes coverage --n 30000 --seed 47 --out data/train_wide47  # ~9 min
    bodyshape fit-correction   # ~50 min of features a set (4 looks x 8 phases a pair) + ~5 min fit

The rows of several sets are pooled (``--data A B --cache CA CB``, one feature cache each); the
default, 90,000 rows of seeds 41, 46 and 47 and 5 networks, was chosen on the calibration splits
against 60,000 and 30,000 rows (docs/evaluation.md, "The correction on twice the rows" and "The
correction on three sets").

``--init CORRECTION`` fine-tunes a saved correction on the rows instead (its networks and input
scaling; tried with off-model rows, ``bodyshape generate --off-model``, and not kept:
docs/evaluation.md, "Off-model rows for the correction").

The training rows get re-capture noise (``--recapture-noise``, :func:`fit_member`): what a second
capture changes, learned from 16 dressed persons of seed 4243 captured 8 times each
(training/recaptures.py; through rembg, cached next to the features).

The shipped shape network reads each pair of the dataset (four looks, as the page does); its
mean body's measurements, shape numbers, the height and the outlines' profiles are the inputs,
the error of each measurement against the true body is the target. The features are cached in
``--cache`` chunk by chunk, by one process per core (a rerun resumes). 10% of the rows are held out to stop the training
(never a calibration or evaluation split: those are judged by ``bodyshape calibrate-intervals``
and ``bodyshape evaluate`` afterwards, the calibration first, since the intervals belong to the
corrected measurements). Writes ``correction.safetensors`` next to the weights.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from bodyshape.errors import BodyShapeError

#: Rows per cached chunk of features.
CHUNK = 500
#: Share of the rows held out to pick each member's epoch.
HOLDOUT = 0.1
#: Scale of the re-capture deviations added to the training rows (fit_member); 0: none. 2 with
#: the corrected numbers held, chosen on the calibration splits and the re-captured persons of
#: seed 4244 (docs/evaluation.md, "The correction trained with re-capture noise").
RECAPTURE_NOISE = 2.0
#: Epochs per member: with the noise the held-out error still falls at 60 (the best epochs were
#: 60, 60, 59 of 60; 93-113 of 120, which also gave back the in-distribution MAE).
EPOCHS = 120
#: Wide-pose sets the correction is fitted on (never a training seed of the shape network) and
#: their feature caches, and the networks in its ensemble: 90,000 rows and 5 networks, chosen on
#: the calibration splits (docs/evaluation.md, "The correction on twice the rows", "The
#: correction on three sets").
DATA = (Path("data/train_wide"), Path("data/train_wide46"), Path("data/train_wide47"))
CACHES = (Path("runs/correction"), Path("runs/correction_46"), Path("runs/correction_47"))
MEMBERS = 5
#: AdamW learning rates: fitting from scratch, and fine-tuning a saved correction (``--init``).
LR, INIT_LR = 1e-3, 3e-4


def add_arguments(p: argparse.ArgumentParser) -> None:
    from bodyshape.correction import CORRECTION_FILES
    from bodyshape.paths import WEIGHTS_DIR

    p.add_argument("--data", type=Path, nargs="+", default=list(DATA),
                   help="datasets never used to train the shape network, their rows pooled (default: the wide-pose "
                        "sets of seeds 41, 46 and 47)")
    p.add_argument("--n", type=int, default=30000, help="rows of each --data to use")
    p.add_argument("--weights", type=Path, default=WEIGHTS_DIR, help="folder with fused.safetensors; the correction is written there")
    p.add_argument("--cache", type=Path, nargs="+", default=list(CACHES),
                   help="where the features are cached: one folder per --data, in the same order")
    p.add_argument("--workers", type=int, default=None, help="processes computing the features (default: all cores)")
    p.add_argument("--chunk", type=int, default=CHUNK, help="rows per cached chunk of features")
    p.add_argument("--members", type=int, default=MEMBERS, help="networks in the ensemble (different seeds)")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", type=Path, default=None, metavar="CORRECTION",
                   help="fine-tune this saved correction (its networks and input scaling) on the rows instead of "
                        "fitting new networks; --members is then its number of networks")
    p.add_argument("--lr", type=float, default=None, help=f"learning rate (default {LR}, {INIT_LR} with --init)")
    p.add_argument("--clothing", choices=tuple(CORRECTION_FILES), default="tight",
                   help="the declared clothing it corrects, which names its file (fitted: rows of `bodyshape generate "
                        "--dressed`, usually with --init from the general correction)")
    p.add_argument("--recapture-noise", type=float, default=RECAPTURE_NOISE,
                   help="scale of the re-capture deviations added to the training rows (0: none; "
                        "training/recaptures.py, docs/evaluation.md)")


def features(predictor, ds, rows: slice) -> dict[str, np.ndarray]:
    """The correction's inputs, the network's measurements and the truth of ``rows`` of ``ds``
    (``predictor``: a :class:`bodyshape.reconstruct.LocalPredictor` of the fused weights)."""
    from bodyshape.correction import correction_inputs
    from bodyshape.measurements import get_measurer
    from bodyshape.uncertainty import tta_inputs, tta_measure
    from training.evaluate import true_meshes

    part = ds.select(rows)
    front, side = part.canvases(part.front), part.canvases(part.side)
    res = tta_measure(predictor.predict_shape(*tta_inputs(front, side, part.height)), None, part.height)
    truth = get_measurer().batch(true_meshes(ds, rows))
    return {"inputs": correction_inputs(res.measurements, res.shape, part.height, front, side),
            "point": res.measurements, "truth": truth}  # fmt: skip


def off_model_flags(data: Path, n: int) -> np.ndarray:
    """(n,) bool: which of the first ``n`` rows of the dataset in ``data`` are off-model bodies."""
    from training.generate import off_model_rows

    cfg = json.loads((Path(data) / "manifest.json").read_text()).get("config", {})
    return off_model_rows(cfg.get("seed", 0), cfg.get("off_model", 0.0), np.arange(n))


_WORKER: dict = {}


def _worker_init(weights: str, data: str, n: int, threads: int | None) -> None:
    import torch

    from bodyshape.reconstruct import LocalPredictor
    from training.dataset import load_dataset

    if threads:
        torch.set_num_threads(threads)
    _WORKER.update(predictor=LocalPredictor(weights), ds=load_dataset(Path(data), limit=n))


def _write_chunk(job: tuple[str, int, int]) -> None:
    """Compute one chunk of features (path, first row, rows) and write it under its name (via a
    temporary file, so a killed run never leaves a partial chunk behind)."""
    path, start, rows = Path(job[0]), job[1], job[2]
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, **features(_WORKER["predictor"], _WORKER["ds"], slice(start, start + rows)))
    tmp.replace(path)


def _chunk_ok(path: Path, rows: int) -> bool:
    """A finished chunk of exactly ``rows`` rows (a run of a smaller ``--n`` leaves a short last one)."""
    try:
        with np.load(path) as z:
            return len(z["truth"]) == rows
    except (OSError, KeyError, ValueError):
        return False


def cached_features(weights: Path, data: Path, n: int, cache: Path, workers: int | None = 1,
                    chunk: int = CHUNK) -> dict[str, np.ndarray]:  # fmt: skip
    """The features of the first ``n`` rows of ``data``, computed where ``cache`` lacks them, by
    ``workers`` processes (None: one per core), one chunk of ``chunk`` rows at a time."""
    from tqdm import tqdm

    from bodyshape.measurements import DEFINITIONS_VERSION
    from bodyshape.uncertainty import file_sha256
    from training.dataset import load_dataset
    from training.pool import run_jobs

    ds = load_dataset(data, limit=n)
    if not ds.coverage:
        raise BodyShapeError(f"{data} stores 0/1 bodies, not the coverage canvases the page reads: the correction "
                             "would be fitted without the sub-pixel edges it is applied to. Generate it with "
                             "`bodyshape generate ... --silhouettes coverage`")
    cache.mkdir(parents=True, exist_ok=True)
    key = {"data": str(data), "seed": ds.manifest.get("config", {}).get("seed"), "weights_sha256": file_sha256(weights),
           "definitions": DEFINITIONS_VERSION}  # the truth and the network's measurements are measured
    if chunk != CHUNK:  # caches of the default chunk predate the key
        key["chunk"] = chunk
    kpath = cache / "cache.json"
    if kpath.exists() and json.loads(kpath.read_text()) != key:
        raise BodyShapeError(f"{cache} holds features of other data, weights or measurement definitions ({kpath}); "
                             "choose another --cache")
    kpath.write_text(json.dumps(key))
    for stale in cache.glob("features_*.tmp.npz"):
        stale.unlink()
    paths = [cache / f"features_{start:06d}.npz" for start in range(0, len(ds), chunk)]
    todo = [(str(path), i * chunk, chunk) for i, path in enumerate(paths)
            if not _chunk_ok(path, min(chunk, len(ds) - i * chunk))]  # fmt: skip
    bar = tqdm(total=len(paths), initial=len(paths) - len(todo), desc="features", unit="chunk")
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    init = (str(weights), str(data), len(ds), 1 if workers > 1 else None)
    run_jobs(_write_chunk, todo, workers, _worker_init, init, bar)
    bar.close()
    parts = []
    for path in paths:
        with np.load(path) as z:
            parts.append({k: z[k] for k in z.files})
    return {k: np.concatenate([p[k] for p in parts])[: len(ds)] for k in parts[0]}


def noise_pool(deviations: np.ndarray, std: np.ndarray, moving_target: bool,
               columns: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:  # fmt: skip
    """Re-capture deviations of the inputs (:func:`training.recaptures.recapture_deviations`, the
    inputs' units) -> :func:`fit_member`'s ``noise`` (the first ``columns``, standardised by
    ``std``) and ``noise_target`` (the measurements' deviations, cm; None unless
    ``moving_target``: the corrected numbers held)."""
    from bodyshape.measurements import MEASUREMENT_NAMES

    columns = columns or deviations.shape[1]
    shift = deviations[:, : len(MEASUREMENT_NAMES)] * 100 if moving_target else None
    return deviations[:, :columns] / std, shift


def fit_member(x: np.ndarray, y_cm: np.ndarray, holdout: np.ndarray, hidden: int, epochs: int, seed: int,
               noise: np.ndarray | None = None, noise_scale: float = 0.0,
               noise_target: np.ndarray | None = None, init=None, lr: float = LR):  # fmt: skip
    """One network, trained on the rows not in ``holdout``; its best epoch on those rows is kept.
    ``noise`` (K, F), standardised like ``x``: what a re-capture of one person changes in the
    inputs (:func:`training.recaptures.recapture_deviations`); each training row gets one of
    them, drawn at random each epoch and times ``noise_scale``, as if captured again.
    ``noise_target`` (K, M) cm: what the same re-capture changes in the network's measurements;
    given, the target moves with them (the truth stays, the error changes), so the network
    learns to give one person the same *corrected* numbers however they were captured; None:
    the target stays, so it learns to give the same *correction*. With noise the held-out rows
    get one fixed draw of it too. ``init``: a trained network (:func:`build_net`, ``x`` scaled
    as it was) to start from instead of a new one; its held-out error counts as epoch -1, so
    it comes back unchanged when no epoch improves on it. -> (net, best epoch, held-out MAE in cm)."""
    import copy

    import torch

    from bodyshape.correction import build_net

    torch.manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y_cm)
    nt = None if noise is None or noise_scale == 0 else torch.from_numpy(np.asarray(noise, np.float32)) * noise_scale
    ny = None if nt is None or noise_target is None else torch.from_numpy(np.asarray(noise_target, np.float32)) * noise_scale
    train, held = torch.from_numpy(np.flatnonzero(~holdout)), torch.from_numpy(np.flatnonzero(holdout))
    if init is None:
        net = build_net(x.shape[1], hidden, dropout=0.1)
    else:
        net = copy.deepcopy(init)
        net[2].p = 0.1  # saved networks are built for inference (no dropout)
    opt = torch.optim.AdamW(net.parameters(), lr, weight_decay=1e-2)
    hx, hy = xt[held], yt[held]
    if nt is not None:  # the held-out rows captured again too (one fixed draw), or the epoch chosen would undo the noise
        k = torch.randint(len(nt), (len(held),), generator=torch.Generator().manual_seed(seed))
        hx, hy = hx + nt[k], (hy if ny is None else hy - ny[k])
    best, best_epoch, state = float("inf"), -1, None
    if init is not None:
        with torch.no_grad():
            best, state = float((net.eval()(hx) - hy).abs().mean()), {k: v.clone() for k, v in net.state_dict().items()}
    for epoch in range(epochs):
        net.train()
        order = train[torch.randperm(len(train))]
        for i in range(0, len(order), 256):
            b = order[i : i + 256]
            xb, yb = xt[b], yt[b]
            if nt is not None:
                k = torch.randint(len(nt), (len(b),))
                xb = xb + nt[k]
                yb = yb if ny is None else yb - ny[k]
            loss = torch.nn.functional.smooth_l1_loss(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            err = float((net(hx) - hy).abs().mean())
        if err < best:
            best, best_epoch, state = err, epoch, {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(state)
    return net.eval(), best_epoch, best


def run(args: argparse.Namespace) -> int:
    from bodyshape.correction import CORRECTION_FILES, MeasurementCorrection
    from bodyshape.measurements import DEFINITIONS_VERSION, MEASUREMENT_NAMES
    from bodyshape.uncertainty import file_sha256

    weights = args.weights / "fused.safetensors"
    if len(args.cache) != len(args.data):
        raise BodyShapeError(f"give one --cache folder per --data set ({len(args.data)} sets, {len(args.cache)} folders)")
    parts = [cached_features(weights, data, args.n, cache, args.workers, args.chunk)
             for data, cache in zip(args.data, args.cache, strict=True)]  # fmt: skip
    f = {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}
    inputs = f["inputs"].astype(np.float32)
    start = MeasurementCorrection.load(args.init) if args.init else None
    if start and len(start.mean) != inputs.shape[1]:
        raise BodyShapeError(f"{args.init} reads {len(start.mean)} inputs, these rows have {inputs.shape[1]}: "
                             "a correction of another version cannot be fine-tuned; fit a new one (no --init)")
    mean, std = (start.mean, start.std) if start else (inputs.mean(0), inputs.std(0) + 1e-6)
    members = len(start.nets) if start else args.members
    hidden = start.nets[0][0].out_features if start else args.hidden
    lr = args.lr or (INIT_LR if start else LR)
    x = (inputs - mean) / std
    y = ((f["truth"] - f["point"]) * 100).astype(np.float32)  # cm
    holdout = np.random.default_rng(args.seed).random(len(x)) < HOLDOUT
    pool = shift = None
    extra = {}
    if args.recapture_noise:
        from training.recaptures import NOISE_CAPTURES, NOISE_SEED, recapture_deviations, recapture_set

        source = recapture_set(weights, *NOISE_CAPTURES, NOISE_SEED, args.cache[0])
        # the corrected numbers held (the target moves with the measurements): chosen on the
        # calibration splits and seed 4244 (docs/evaluation.md)
        pool, shift = noise_pool(recapture_deviations(source["inputs"], source["person"]), std, moving_target=True)
        extra["recapture_noise_from"] = f"{NOISE_CAPTURES[0]} persons x {NOISE_CAPTURES[1]} captures of seed {NOISE_SEED}"
    if start:
        extra["fine_tuned_from"] = {"file": str(args.init), "trained_on": start.info.get("trained_on"),
                                    "epochs": start.info.get("epochs"), "lr": lr}  # fmt: skip
    nets, epochs = [], []
    for k in range(members):
        net, epoch, err = fit_member(x, y, holdout, hidden, args.epochs, args.seed + k, pool,
                                     args.recapture_noise, shift, start.nets[k] if start else None, lr)  # fmt: skip
        nets.append(net)
        epochs.append(epoch)
        best = "the start (unchanged)" if epoch < 0 else f"epoch {epoch + 1}"
        print(f"member {k + 1}/{members}: best {best}, held-out MAE {10 * err:.1f} mm (all measurements)")
    sets = " + ".join(f"{data} (rows 0-{len(part['truth']) - 1})" for data, part in zip(args.data, parts, strict=True))
    info = {"trained_on": f"{sets}, {int(holdout.sum())} held out to stop",
            "weights_sha256": file_sha256(weights), "epochs": epochs, "hidden": hidden,
            "definitions": DEFINITIONS_VERSION, "recapture_noise": args.recapture_noise, "clothing": args.clothing,
            **extra}  # fmt: skip
    model = MeasurementCorrection(nets, mean, std, info)
    corrected = f["point"] + model.change(inputs)
    stages = {"network": f["point"], **({"start": f["point"] + start.change(inputs)} if start else {}), "corrected": corrected}
    kinds = {"": holdout}
    bumped = np.concatenate([off_model_flags(data, len(part["truth"])) for data, part in zip(args.data, parts, strict=True)])
    if bumped.any():  # --off-model rows: the bodies with bumps and those without, apart
        kinds = {" (off-model bodies)": holdout & bumped, " (Anny bodies)": holdout & ~bumped}
    for kind, rows in kinds.items():
        print(f"held-out rows{kind}, {int(rows.sum())}, MAE (bias) mm, {' -> '.join(stages)} (before the refit):")
        for g in ("chest", "waist", "hip", "thigh", "neck"):
            j = MEASUREMENT_NAMES.index(g)
            errs = [(v - f["truth"])[rows, j] * 1000 for v in stages.values()]
            print(f"  {g:6s} " + " -> ".join(f"{np.abs(e).mean():5.1f} ({e.mean():+.1f})" for e in errs))
    out = model.save(args.weights / CORRECTION_FILES[args.clothing])
    print(f"wrote {out}; now run `bodyshape calibrate-intervals` (the intervals are those of the corrected measurements)")
    return 0
