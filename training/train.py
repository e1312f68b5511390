"""Staged training: front-only, side-only, fused (encoders initialised from both), and the
fused-from-scratch control with the same data and the same total compute.

Budgets are counted in *samples seen*, converted to a common unit: one fused step costs
about twice a single-view step (two encoders), so the scratch control gets
``front/2 + side/2 + fused`` fused samples. Every stage checkpoints each epoch
(``runs/<name>/<stage>/last.pt``) and resumes from there; finished stages are skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bodyshape.body_model import N_PHENOTYPES, get_body_model
from bodyshape.checkpoint import save_model
from bodyshape.errors import BodyShapeError
from bodyshape.nets import BodyShapeNet, NetConfig
from training.dataset import SilhouetteDataset, load_dataset

STAGES = ("front", "side", "fused_staged", "fused_scratch")
STAGE_VIEWS = {"front": ("front",), "side": ("side",), "fused_staged": ("front", "side"), "fused_scratch": ("front", "side")}


@dataclass
class TrainConfig:
    data: str = "data/train"
    out: str = "runs/main"
    weights_out: str = "bodyshape/weights"
    val_size: int = 1000
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    # samples seen per stage (single-view stages count single-view samples)
    samples: dict[str, int] = field(default_factory=lambda: {"front": 96000, "side": 96000, "fused_staged": 32000})
    frozen_fraction: float = 0.25  # fused_staged: first part with frozen encoders (head only)
    finetune_lr_scale: float = 0.3  # encoders' learning rate after unfreezing
    vertex_loss_weight: float = 0.1  # per cm of mean vertex distance
    n_loss_vertices: int = 2000
    height_noise_m: float = 0.01  # typed height is off by ~1 cm
    epoch_samples: int = 16000  # checkpoint interval
    seed: int = 0
    threads: int = 2
    stages: tuple[str, ...] = STAGES
    net: dict = field(default_factory=dict)  # NetConfig overrides (widths, feature_dim...)

    def stage_samples(self, stage: str) -> int:
        if stage == "fused_scratch":  # same total compute as the staged pipeline
            s = self.samples
            return int(s["front"] / 2 + s["side"] / 2 + s["fused_staged"])
        return int(self.samples[stage])


class Normaliser(nn.Module):
    """Shape parameters standardised per label (mean/std of the training set)."""

    def __init__(self, shapes: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("mean", torch.from_numpy(shapes.mean(0)).float())
        self.register_buffer("std", torch.from_numpy(shapes.std(0) + 1e-3).float())


class Losses:
    """Parameter loss (standardised MSE) + vertex loss through the body model's rest pose."""

    def __init__(self, cfg: TrainConfig, shapes: np.ndarray) -> None:
        self.cfg = cfg
        self.norm = Normaliser(shapes)
        self.body = get_body_model()
        rng = np.random.default_rng(0)
        self.vidx = torch.from_numpy(np.sort(rng.choice(self.body.n_vertices, cfg.n_loss_vertices, replace=False)))

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict]:
        p = (pred - self.norm.mean) / self.norm.std
        t = (target - self.norm.mean) / self.norm.std
        param = ((p - t) ** 2).mean()
        clamped = torch.cat([pred[:, :N_PHENOTYPES].clamp(0, 1), pred[:, N_PHENOTYPES:].clamp(-1, 1)], 1)
        vp = self.body.rest_vertices_torch(clamped, self.vidx)
        with torch.no_grad():
            vt = self.body.rest_vertices_torch(target, self.vidx)
        vert_cm = (vp - vt).norm(dim=-1).mean() * 100
        loss = param + self.cfg.vertex_loss_weight * vert_cm
        return loss, {"param": float(param.detach()), "vertex_cm": float(vert_cm.detach())}


def _to_tensors(b: dict[str, np.ndarray], cfg: TrainConfig, rng: np.random.Generator | None) -> tuple:
    f = torch.from_numpy(b["front"]).float()[:, None]
    s = torch.from_numpy(b["side"]).float()[:, None]
    h = b["height"].copy()
    if rng is not None:
        h = h + rng.normal(0, cfg.height_noise_m, h.shape).astype(np.float32)
    return f, s, torch.from_numpy(h), torch.from_numpy(b["shape"])


@torch.no_grad()
def predict(model: BodyShapeNet, ds: SilhouetteDataset, batch: int = 256, side_override: np.ndarray | None = None) -> np.ndarray:
    """Shape predictions for a whole dataset; ``side_override`` replaces the side inputs."""
    model.eval()
    out = []
    for i in range(0, len(ds), batch):
        idx = np.arange(i, min(i + batch, len(ds)))
        b = ds.batch(idx)
        if side_override is not None:
            b["side"] = side_override[idx]
        f, s, h, _ = _to_tensors(b, TrainConfig(), None)
        out.append(model(f, s, h).numpy())
    return np.concatenate(out)


def _stage_dir(cfg: TrainConfig, stage: str) -> Path:
    return Path(cfg.out) / stage


def build_stage_model(cfg: TrainConfig, stage: str) -> BodyShapeNet:
    torch.manual_seed(cfg.seed + STAGES.index(stage))
    model = BodyShapeNet(NetConfig(views=STAGE_VIEWS[stage], **cfg.net))
    if stage == "fused_staged":
        for view in ("front", "side"):
            ck = torch.load(_stage_dir(cfg, view) / "final.pt", map_location="cpu", weights_only=False)
            enc = {k.split(f"encoders.{view}.", 1)[1]: v for k, v in ck["model"].items() if k.startswith(f"encoders.{view}.")}
            model.encoders[view].load_state_dict(enc)
    return model


def _param_groups(model: BodyShapeNet, cfg: TrainConfig, stage: str, step: int, total: int) -> float:
    """Encoder learning-rate multiplier for this step (0 = frozen)."""
    if stage != "fused_staged":
        return 1.0
    return 0.0 if step < cfg.frozen_fraction * total else cfg.finetune_lr_scale


def train_stage(cfg: TrainConfig, stage: str, train: SilhouetteDataset, val: SilhouetteDataset, losses: Losses) -> dict:
    from tqdm import tqdm

    sdir = _stage_dir(cfg, stage)
    sdir.mkdir(parents=True, exist_ok=True)
    if (sdir / "final.pt").exists():
        print(f"[{stage}] already trained, skipping")
        return json.loads((sdir / "summary.json").read_text())
    model = build_stage_model(cfg, stage)
    enc_params = [p for n, p in model.named_parameters() if n.startswith("encoders.")]
    head_params = [p for n, p in model.named_parameters() if not n.startswith("encoders.")]
    opt = torch.optim.AdamW([{"params": enc_params}, {"params": head_params}], lr=cfg.lr, weight_decay=cfg.weight_decay)
    total_steps = max(1, cfg.stage_samples(stage) // cfg.batch_size)
    steps_per_epoch = max(1, cfg.epoch_samples // cfg.batch_size)
    state = {"step": 0, "history": [], "seconds": 0.0}
    last = sdir / "last.pt"
    if last.exists():
        ck = torch.load(last, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        state = ck["state"]
        print(f"[{stage}] resuming at step {state['step']}/{total_steps}")
    rng = np.random.default_rng([cfg.seed, STAGES.index(stage), state["step"]])
    bar = tqdm(total=total_steps, initial=state["step"], desc=stage, unit="step")
    t0 = time.time() - state["seconds"]
    running: list[dict] = []
    while state["step"] < total_steps:
        model.train()
        step = state["step"]
        enc_mult = _param_groups(model, cfg, stage, step, total_steps)
        lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / total_steps))  # cosine decay
        opt.param_groups[0]["lr"] = lr * enc_mult
        opt.param_groups[1]["lr"] = lr
        for p in enc_params:
            p.requires_grad_(enc_mult > 0)
        if enc_mult == 0:  # frozen encoders keep their BatchNorm statistics too
            for enc in model.encoders.values():
                enc.eval()
        idx = rng.integers(0, len(train), cfg.batch_size)
        f, s, h, y = _to_tensors(train.batch(idx), cfg, rng)
        loss, parts = losses(model(f, s, h), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running.append({"loss": float(loss), **parts})
        state["step"] += 1
        bar.update()
        if state["step"] % 50 == 0:
            bar.set_postfix(loss=f"{np.mean([r['loss'] for r in running[-50:]]):.3f}",
                            vcm=f"{np.mean([r['vertex_cm'] for r in running[-50:]]):.2f}")
        if state["step"] % steps_per_epoch == 0 or state["step"] == total_steps:
            val_loss = validate(model, val, losses)
            state["history"].append({
                "step": state["step"], "samples": state["step"] * cfg.batch_size,
                "train_loss": float(np.mean([r["loss"] for r in running])),
                "train_vertex_cm": float(np.mean([r["vertex_cm"] for r in running])),
                **{f"val_{k}": v for k, v in val_loss.items()},
                "seconds": time.time() - t0,
            })
            running = []
            state["seconds"] = time.time() - t0
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "state": state}, last.with_suffix(".tmp"))
            last.with_suffix(".tmp").replace(last)
            print(f"[{stage}] step {state['step']}: " + json.dumps(state["history"][-1]))
    bar.close()
    summary = {"stage": stage, "steps": total_steps, "samples": total_steps * cfg.batch_size,
               "seconds": round(time.time() - t0, 1), "history": state["history"]}
    torch.save({"model": model.state_dict(), "net_config": model.cfg.to_dict(), "summary": summary}, sdir / "final.pt")
    (sdir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


@torch.no_grad()
def validate(model: BodyShapeNet, val: SilhouetteDataset, losses: Losses) -> dict:
    model.eval()
    parts = []
    for i in range(0, len(val), 256):
        f, s, h, y = _to_tensors(val.batch(np.arange(i, min(i + 256, len(val)))), TrainConfig(), None)
        _, p = losses(model(f, s, h), y)
        parts.append(p)
    return {k: float(np.mean([p[k] for p in parts])) for k in parts[0]}


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
    """Copy each stage's final model to the shipped safetensors files (with metadata)."""
    names = {"front": "front", "side": "side", "fused_staged": "fused", "fused_scratch": "fused_scratch"}
    for stage, summary in summaries.items():
        ck = torch.load(_stage_dir(cfg, stage) / "final.pt", map_location="cpu", weights_only=False)
        model = BodyShapeNet(NetConfig.from_dict(ck["net_config"]))
        model.load_state_dict(ck["model"])
        info = {
            "trained": True, "stage": stage, "samples_seen": summary["samples"],
            "train_seconds": summary["seconds"], "dataset_n": data_manifest["n"],
            "dataset_seed": data_manifest["config"]["seed"],
            "final_val_vertex_mm": round(summary["history"][-1]["val_vertex_cm"] * 10, 2),
        }
        save_model(model, Path(cfg.weights_out) / f"{names[stage]}.safetensors", info)


def main(cfg: TrainConfig) -> dict:
    torch.set_num_threads(cfg.threads)
    unknown = set(cfg.stages) - set(STAGES)
    if unknown:
        raise BodyShapeError(f"unknown stages {sorted(unknown)}; choose from {STAGES}")
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    (Path(cfg.out) / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
    print("config:", json.dumps(dataclasses.asdict(cfg)))
    full = load_dataset(cfg.data)
    if len(full) <= cfg.val_size:
        raise BodyShapeError(f"dataset has {len(full)} samples, need more than val_size={cfg.val_size}")
    n_train = len(full) - cfg.val_size
    train, val = full.select(slice(None, n_train)), full.select(slice(n_train, None))
    losses = Losses(cfg, train.shape)
    summaries = {}
    for stage in cfg.stages:
        summaries[stage] = train_stage(cfg, stage, train, val, losses)
    plot_curves(cfg, summaries, Path(cfg.out) / "loss_curves.png")
    if cfg.weights_out:
        export_weights(cfg, full.manifest, summaries)
    return summaries


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    p.add_argument("--data", default=d.data)
    p.add_argument("--out", default=d.out)
    p.add_argument("--weights-out", default=d.weights_out, help="where the shipped .safetensors go ('' = nowhere)")
    p.add_argument("--samples", type=int, nargs=3, metavar=("FRONT", "SIDE", "FUSED"),
                   default=[d.samples["front"], d.samples["side"], d.samples["fused_staged"]])
    p.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    p.add_argument("--val-size", type=int, default=d.val_size)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--epoch-samples", type=int, default=d.epoch_samples)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--widths", type=int, nargs="+", default=None, help="encoder widths (tiny models for tests)")


def run(args: argparse.Namespace) -> int:
    net = {"widths": tuple(args.widths)} if args.widths else {}
    cfg = TrainConfig(
        data=args.data, out=args.out, weights_out=args.weights_out, val_size=args.val_size,
        batch_size=args.batch_size, epoch_samples=args.epoch_samples, threads=args.threads,
        samples=dict(zip(("front", "side", "fused_staged"), args.samples, strict=True)),
        stages=tuple(args.stages), net=net,
    )
    main(cfg)
    return 0
