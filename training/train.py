"""Staged training: front-only, side-only, fused (encoders initialised from both), and the
fused-from-scratch control with the same data and the same total compute.

Budgets are counted in *samples seen*, converted to a common unit: one fused step costs
about twice a single-view step (two encoders), so the scratch control gets
``front/2 + side/2 + fused`` fused samples. A stage can instead get a budget in *seconds*
(``TrainConfig.seconds``): its schedule (cosine learning rate, frozen phase) then runs on
elapsed time, which is how the one-GPU recipe (:mod:`training.one_gpu`) fits a lease.

A run writes only into its run folder (``runs/<name>/``, :func:`training.config.run_dir`):
per stage ``<stage>/config.json`` (the configuration it started with), ``last.pt`` (a
checkpoint each epoch), ``final.pt`` and ``summary.json``; then ``loss_curves.png`` and
``weights/*.safetensors`` (each with its training configuration in its metadata). Resuming
continues from ``last.pt`` and skips finished stages, and refuses a stage whose stored
configuration differs from the requested one. The shipped weights change only through
``bodyshape ship`` (:mod:`training.ship`).

Training runs on the CPU or, with ``device="cuda"``, on a GPU: the whole dataset is then
unpacked into GPU memory once and batches never leave it; the CNN runs in bfloat16.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bodyshape.body_model import N_SHAPE, BodyModel, apply_blendshapes, clamp_shape, get_body_model
from bodyshape.checkpoint import save_model
from bodyshape.errors import BodyShapeError
from bodyshape.nets import BodyShapeNet, NetConfig
from training.batches import Batches, autocast, ordered_batches, to_tensors
from training.config import (
    FRONT,
    FUSED_STAGED,
    SIDE,
    STAGE_VIEWS,
    STAGES,
    WEIGHT_NAMES,
    TrainConfig,
    config_to_json,
    refuse_changed_config,
    run_dir,
    run_weights_dir,
    stage_config,
)
from training.dataset import SilhouetteDataset, load_dataset

__all__ = ["STAGES", "STAGE_VIEWS", "Batches", "Losses", "TrainConfig", "build_stage_model", "main", "train_stage"]


class Normaliser(nn.Module):
    """Shape parameters standardised per label (mean/std of the training set)."""

    def __init__(self, shapes: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("mean", torch.from_numpy(shapes.mean(0)).float())
        self.register_buffer("std", torch.from_numpy(shapes.std(0) + 1e-3).float())


def body_model_for_training(device: torch.device) -> BodyModel:
    """The body model copy on the training device, or the CPU's where Anny cannot run there.

    With the CPU copy, blendshape coefficients are computed on the CPU and autograd carries
    them to the training device.
    """
    if device.type == "cpu":
        return get_body_model("cpu")
    try:
        body = get_body_model(device)
        probe = torch.full((2, N_SHAPE), 0.5, device=device)
        assert body.blendshape_coefficients(probe).device.type == device.type
        return body
    except Exception as e:  # noqa: BLE001  (any failure: fall back to the CPU, which works)
        print(f"[losses] Anny on {device} failed ({type(e).__name__}: {e}); blendshape weights on the CPU")
        return get_body_model("cpu")


class Losses:
    """Parameter loss (standardised MSE) + vertex loss through the body model's rest pose.

    Everything runs on the training device. Anny's blendshape coefficients are computed
    there too when Anny runs on it; otherwise on the CPU (autograd crosses devices).
    """

    def __init__(self, cfg: TrainConfig, shapes: np.ndarray) -> None:
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        self.norm = Normaliser(shapes).to(self.device)
        self.body = body_model_for_training(self.device)
        rng = np.random.default_rng(0)
        vidx = torch.from_numpy(np.sort(rng.choice(self.body.n_vertices, cfg.n_loss_vertices, replace=False)))
        self.template, self.blend = (t.to(self.device) for t in self.body.vertex_basis(vidx))
        #: Anny's coefficients in a few tensor ops, no GPU sync (training.body_model_bench compares).
        self.coefficients = self.body.coefficients

    def rest_vertices(self, shape: torch.Tensor) -> torch.Tensor:
        coeffs = self.coefficients(shape).to(self.device)
        return apply_blendshapes(self.template, self.blend, coeffs)

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict]:
        pred = pred.float()
        p = (pred - self.norm.mean) / self.norm.std
        t = (target - self.norm.mean) / self.norm.std
        param = ((p - t) ** 2).mean()
        vp = self.rest_vertices(clamp_shape(pred))
        with torch.no_grad():
            vt = self.rest_vertices(target)
        vert_cm = (vp - vt).norm(dim=-1).mean() * 100
        loss = param + self.cfg.vertex_loss_weight * vert_cm
        return loss, {"param": param.detach(), "vertex_cm": vert_cm.detach()}


def _stage_dir(cfg: TrainConfig, stage: str) -> Path:
    return run_dir(cfg.out) / stage


def check_stage_config(cfg: TrainConfig, stage: str) -> None:
    """Record the configuration a new stage starts with; refuse to continue one begun with another."""
    sdir = _stage_dir(cfg, stage)
    path = sdir / "config.json"
    started = (sdir / "last.pt").exists() or (sdir / "final.pt").exists()
    if not started:
        sdir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config_to_json(cfg), indent=1))
        return
    if not path.exists():
        raise BodyShapeError(f"{sdir} holds checkpoints but no config.json, so a resume cannot be checked; "
                             "use another --out")
    refuse_changed_config(
        stage_config(json.loads(path.read_text()), stage), stage_config(config_to_json(cfg), stage),
        f"stage {stage} in {sdir} was trained", "Use another --out for a new run, or the same arguments to resume.",
    )


def build_stage_model(cfg: TrainConfig, stage: str) -> BodyShapeNet:
    torch.manual_seed(cfg.seed + STAGES.index(stage))
    model = BodyShapeNet(NetConfig(views=STAGE_VIEWS[stage], **cfg.net))
    if stage == FUSED_STAGED and cfg.init:  # continue training a whole fused model
        from bodyshape.checkpoint import load_model

        trained = load_model(cfg.init)
        if trained.cfg.to_dict() != model.cfg.to_dict():
            raise BodyShapeError(f"{cfg.init} is another network ({trained.cfg.to_dict()}); cannot start from it")
        model.load_state_dict(trained.state_dict())
    elif stage == FUSED_STAGED:
        for view in (FRONT, SIDE):
            ck = torch.load(_stage_dir(cfg, view) / "final.pt", map_location="cpu", weights_only=False)
            enc = {k.split(f"encoders.{view}.", 1)[1]: v for k, v in ck["model"].items() if k.startswith(f"encoders.{view}.")}
            model.encoders[view].load_state_dict(enc)
    return model


def _encoder_lr_multiplier(cfg: TrainConfig, stage: str, progress: float) -> float:
    """Encoder learning-rate multiplier at this point of the stage (0 = frozen)."""
    if stage != FUSED_STAGED:
        return 1.0
    return 0.0 if progress < cfg.frozen_fraction else cfg.finetune_lr_scale


def _means(rows: list[dict]) -> dict[str, float]:
    """Means of logged per-step values (tensors, possibly on the GPU: one transfer)."""
    keys = list(rows[0])
    stacked = torch.stack([torch.stack([torch.as_tensor(r[k], dtype=torch.float32) for k in keys]) for r in rows])
    return dict(zip(keys, stacked.float().mean(0).tolist(), strict=True))


class StageRun:
    """One stage in progress: model, optimiser, schedule, and its ``last.pt`` checkpoint."""

    def __init__(self, cfg: TrainConfig, stage: str) -> None:
        self.cfg, self.stage = cfg, stage
        self.sdir = _stage_dir(cfg, stage)
        self.device = torch.device(cfg.device)
        self.model = build_stage_model(cfg, stage).to(self.device)
        named = list(self.model.named_parameters())
        self.enc_params = [p for n, p in named if n.startswith("encoders.")]
        head_params = [p for n, p in named if not n.startswith("encoders.")]
        # fused: one kernel per step on a GPU instead of several per parameter tensor
        # (training.body_model_bench counts the operations)
        self.opt = torch.optim.AdamW([{"params": self.enc_params}, {"params": head_params}],
                                     lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
        self.budget_s = cfg.seconds.get(stage)
        self.total_steps = None if self.budget_s else max(1, cfg.stage_samples(stage) // cfg.batch_size)
        self.steps_per_epoch = max(1, cfg.epoch_samples // cfg.batch_size)
        self.state: dict = {"step": 0, "history": [], "seconds": 0.0, "best": None}
        self.best_model: dict | None = None
        self.running: list[dict] = []
        self._resume()
        self.t0 = time.time() - self.state["seconds"]

    def _resume(self) -> None:
        last = self.sdir / "last.pt"
        if last.exists():
            ck = torch.load(last, map_location=self.device, weights_only=False)
            self.model.load_state_dict(ck["model"])
            self.opt.load_state_dict(ck["opt"])
            self.state = {"best": None, **ck["state"]}
            self.best_model = ck.get("best_model")
            print(f"[{self.stage}] resuming at step {self.state['step']}/{self.total_steps or f'{self.budget_s} s'}")

    def progress(self) -> float:
        """Fraction of the stage done: by steps, or by elapsed time under a time budget."""
        if self.budget_s:
            return (time.time() - self.t0) / self.budget_s
        return self.state["step"] / self.total_steps

    def _set_schedule(self) -> None:
        """Cosine learning rate; in fused_staged, encoders frozen (BatchNorm statistics too) at first."""
        frac = self.progress()
        enc_mult = _encoder_lr_multiplier(self.cfg, self.stage, frac)
        lr = self.cfg.lr * 0.5 * (1 + math.cos(math.pi * frac))
        self.opt.param_groups[0]["lr"] = lr * enc_mult
        self.opt.param_groups[1]["lr"] = lr
        for p in self.enc_params:
            p.requires_grad_(enc_mult > 0)
        if enc_mult == 0:
            for enc in self.model.encoders.values():
                enc.eval()

    def step(self, batch: tuple[torch.Tensor, ...], losses: Losses) -> None:
        self.model.train()
        self._set_schedule()
        f, s, h, y = batch
        with autocast(self.device):
            pred = self.model(f, s, h)
        loss, parts = losses(pred, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.running.append({"loss": loss.detach(), **parts})  # tensors: no GPU sync per step
        self.state["step"] += 1

    def epoch_done(self) -> bool:
        return self.state["step"] % self.steps_per_epoch == 0 or self.progress() >= 1

    def checkpoint(self, val: SilhouetteDataset, losses: Losses) -> None:
        """Validate, log, remember the best model (``keep_best``) and write ``last.pt``."""
        val_loss = validate(self.model, val, losses)
        mean = _means(self.running)
        self.state["history"].append({
            "step": self.state["step"], "samples": self.state["step"] * self.cfg.batch_size,
            "train_loss": mean["loss"], "train_vertex_cm": mean["vertex_cm"],
            **{f"val_{k}": v for k, v in val_loss.items()},
            "seconds": time.time() - self.t0,
        })
        val_total = val_loss["param"] + self.cfg.vertex_loss_weight * val_loss["vertex_cm"]
        if self.cfg.keep_best and (self.state["best"] is None or val_total < self.state["best"]["val_loss"]):
            self.state["best"] = {"step": self.state["step"], "val_loss": val_total}
            self.best_model = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.running = []
        self.state["seconds"] = time.time() - self.t0
        last = self.sdir / "last.pt"
        torch.save({"model": self.model.state_dict(), "opt": self.opt.state_dict(), "state": self.state,
                    "best_model": self.best_model}, last.with_suffix(".tmp"))
        last.with_suffix(".tmp").replace(last)
        print(f"[{self.stage}] step {self.state['step']}: " + json.dumps(self.state["history"][-1]))

    def finish(self) -> dict:
        """Write ``final.pt`` and ``summary.json`` (the best model with ``keep_best``); return the summary."""
        if self.cfg.keep_best and self.best_model is not None:
            self.model.load_state_dict(self.best_model)
            print(f"[{self.stage}] keeping the model of step {self.state['best']['step']} (lowest validation loss)")
        self.model.cpu()
        summary = {"stage": self.stage, "steps": self.state["step"], "samples": self.state["step"] * self.cfg.batch_size,
                   "seconds": round(time.time() - self.t0, 1), "history": self.state["history"],
                   "device": str(self.device), "best": self.state["best"]}
        torch.save({"model": self.model.state_dict(), "net_config": self.model.cfg.to_dict(), "summary": summary},
                   self.sdir / "final.pt")
        (self.sdir / "summary.json").write_text(json.dumps(summary, indent=1))
        return summary


def train_stage(cfg: TrainConfig, stage: str, train: SilhouetteDataset, val: SilhouetteDataset, losses: Losses) -> dict:
    """Train one stage to its budget (resuming from its ``last.pt``); a finished stage is skipped."""
    from tqdm import tqdm

    check_stage_config(cfg, stage)
    sdir = _stage_dir(cfg, stage)
    if (sdir / "final.pt").exists():
        print(f"[{stage}] already trained, skipping")
        return json.loads((sdir / "summary.json").read_text())
    batches = Batches(train, cfg)
    run = StageRun(cfg, stage)
    rng = np.random.default_rng([cfg.seed, STAGES.index(stage), run.state["step"]])
    bar = tqdm(total=run.total_steps, initial=run.state["step"], desc=stage, unit="step")
    while run.progress() < 1:
        run.step(batches.sample(rng), losses)
        bar.update()
        if run.state["step"] % 50 == 0:
            recent = _means(run.running[-50:])
            bar.set_postfix(loss=f"{recent['loss']:.3f}", vcm=f"{recent['vertex_cm']:.2f}")
        if run.epoch_done():
            run.checkpoint(val, losses)
    bar.close()
    return run.finish()


@torch.no_grad()
def validate(model: BodyShapeNet, val: SilhouetteDataset, losses: Losses) -> dict:
    model.eval()
    parts = []
    for _, b in ordered_batches(val):
        f, s, h, y = (t.to(losses.device) for t in to_tensors(b))
        with autocast(losses.device):
            pred = model(f, s, h)
        _, p = losses(pred, y)
        parts.append(p)
    return _means(parts)


def plot_curves(cfg: TrainConfig, summaries: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for stage, s in summaries.items():
        hist = s["history"]
        x = [h["samples"] for h in hist]
        axes[0].plot(x, [h["train_loss"] for h in hist], label=f"{stage} train")
        axes[0].plot(x, [h["val_param"] + cfg.vertex_loss_weight * h["val_vertex_cm"] for h in hist], "--", label=f"{stage} val")
        axes[1].plot(x, [h["val_vertex_cm"] * 10 for h in hist], label=stage)
    axes[0].set(xlabel="samples seen", ylabel="loss", yscale="log", title="loss")
    axes[1].set(xlabel="samples seen", ylabel="mm", title="validation mean vertex error (rest pose, 2000 vertices)")
    for a in axes:
        a.legend(fontsize=7)
        a.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def export_weights(cfg: TrainConfig, data_manifest: dict, summaries: dict) -> None:
    """Each stage's final model as a self-describing ``.safetensors`` in the run's ``weights/``.

    The metadata holds the training configuration the stage was trained with, so a shipped
    file says how it was made.
    """
    for stage, summary in summaries.items():
        sdir = _stage_dir(cfg, stage)
        ck = torch.load(sdir / "final.pt", map_location="cpu", weights_only=False)
        model = BodyShapeNet(NetConfig.from_dict(ck["net_config"]))
        model.load_state_dict(ck["model"])
        info = {
            "trained": True, "stage": stage, "samples_seen": summary["samples"],
            "train_seconds": summary["seconds"], "dataset_n": data_manifest["n"],
            "dataset_seed": data_manifest["config"]["seed"],
            "final_val_vertex_mm": round(summary["history"][-1]["val_vertex_cm"] * 10, 2),
        }
        train_config = json.loads((sdir / "config.json").read_text())
        save_model(model, run_weights_dir(cfg.out) / f"{WEIGHT_NAMES[stage]}.safetensors", info, train_config)


def _prepare(cfg: TrainConfig) -> None:
    """Threads, device and stage checks, and every stage's configuration checked before any work."""
    torch.set_num_threads(cfg.threads)
    if cfg.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BodyShapeError(f"--device {cfg.device}: PyTorch sees no CUDA GPU here; use --device cpu")
        torch.backends.cudnn.benchmark = True
    unknown = set(cfg.stages) - set(STAGES)
    if unknown:
        raise BodyShapeError(f"unknown stages {sorted(unknown)}; choose from {STAGES}")
    for stage in cfg.stages:
        check_stage_config(cfg, stage)


def main(cfg: TrainConfig, full: SilhouetteDataset | None = None) -> dict:
    """Train ``cfg.stages`` in order on ``full`` (default: the dataset at ``cfg.data``)."""
    _prepare(cfg)
    print(f"run folder: {run_dir(cfg.out)}; config:", json.dumps(config_to_json(cfg)))
    full = full if full is not None else load_dataset(cfg.data)
    if len(full) <= cfg.val_size:
        raise BodyShapeError(f"dataset has {len(full)} samples, need more than val_size={cfg.val_size}")
    n_train = len(full) - cfg.val_size
    train, val = full.select(slice(None, n_train)), full.select(slice(n_train, None))
    losses = Losses(cfg, train.shape)
    summaries = {stage: train_stage(cfg, stage, train, val, losses) for stage in cfg.stages}
    plot_curves(cfg, summaries, run_dir(cfg.out) / "loss_curves.png")
    export_weights(cfg, full.manifest, summaries)
    print(f"weights in {run_weights_dir(cfg.out)}; `bodyshape ship {cfg.out}` makes them the shipped ones")
    return summaries


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    p.add_argument("--data", default=d.data)
    p.add_argument("--out", default=d.out,
                   help="run folder: a name (a folder of runs/, $BODYSHAPE_RUNS_DIR) or a path with a '/'; "
                        "checkpoints, curves and weights/ go there (default %(default)s)")
    p.add_argument("--samples", type=int, nargs=3, metavar=("FRONT", "SIDE", "FUSED"),
                   default=[d.samples[FRONT], d.samples[SIDE], d.samples[FUSED_STAGED]])
    p.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    p.add_argument("--val-size", type=int, default=d.val_size)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--epoch-samples", type=int, default=d.epoch_samples)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--widths", type=int, nargs="+", default=None, help="encoder widths (tiny models for tests)")
    p.add_argument("--device", default=d.device, help="cpu or cuda")
    p.add_argument("--seconds", type=float, nargs=3, metavar=("FRONT", "SIDE", "FUSED"), default=None,
                   help="time budget per stage in seconds (replaces --samples; the scratch control keeps samples)")
    p.add_argument("--p-flip", type=float, default=d.p_flip, help="probability of mirroring each view")
    p.add_argument("--random-phase", action="store_true",
                   help="coverage datasets: read each sample at a random sub-pixel phase, as the served reader does")
    p.add_argument("--keep-best", action="store_true", help="final model = lowest validation loss")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (cosine decay over each stage)")
    p.add_argument("--init", default=None, metavar="FUSED.safetensors",
                   help="fine-tune this trained fused model (with --stages fused_staged; nothing frozen)")


def run(args: argparse.Namespace) -> int:
    net = {"widths": tuple(args.widths)} if args.widths else {}
    staged = (FRONT, SIDE, FUSED_STAGED)
    if args.init and tuple(args.stages) != (FUSED_STAGED,):
        raise BodyShapeError("--init fine-tunes a fused model: use it with --stages fused_staged only")
    tune = dict(init=args.init, frozen_fraction=0.0, finetune_lr_scale=1.0) if args.init else {}
    cfg = TrainConfig(
        data=args.data, out=args.out, val_size=args.val_size, lr=args.lr,
        batch_size=args.batch_size, epoch_samples=args.epoch_samples, threads=args.threads,
        samples=dict(zip(staged, args.samples, strict=True)),
        stages=tuple(args.stages), net=net, device=args.device, p_flip=args.p_flip, random_phase=args.random_phase, keep_best=args.keep_best,
        seconds=dict(zip(staged, args.seconds, strict=True)) if args.seconds else {}, **tune,
    )
    main(cfg)
    return 0
