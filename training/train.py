"""Staged training: front-only, side-only, fused (encoders initialised from both), and the
fused-from-scratch control with the same data and the same total compute.

Budgets are counted in *samples seen*, converted to a common unit: one fused step costs
about twice a single-view step (two encoders), so the scratch control gets
``front/2 + side/2 + fused`` fused samples. A stage can instead get a budget in *seconds*
(``TrainConfig.seconds``): its schedule (cosine learning rate, frozen phase) then runs on
elapsed time, which is how the one-GPU recipe (:mod:`training.one_gpu`) fits a lease.
Every stage checkpoints each epoch (``runs/<name>/<stage>/last.pt``) and resumes from
there; finished stages are skipped.

Training runs on the CPU or, with ``device="cuda"``, on a GPU: the whole dataset is then
unpacked into GPU memory once and batches never leave it; the CNN runs in bfloat16.
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

from bodyshape.body_model import N_PHENOTYPES, apply_blendshapes, get_body_model
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
    device: str = "cpu"  # or "cuda"
    seconds: dict[str, float] = field(default_factory=dict)  # per-stage time budget (replaces samples)
    p_flip: float = 0.0  # mirror each view at random per sample (shapes are left-right symmetric)
    keep_best: bool = False  # final model = the one with the lowest validation loss
    init: str | None = None  # fused_staged: start from this trained fused model file (fine-tuning)

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
    """Parameter loss (standardised MSE) + vertex loss through the body model's rest pose.

    Everything runs on the training device. Anny's blendshape coefficients are computed
    there too when Anny runs on it; otherwise on the CPU (autograd crosses devices).
    """

    def __init__(self, cfg: TrainConfig, shapes: np.ndarray) -> None:
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        self.norm = Normaliser(shapes).to(self.device)
        self.body = get_body_model()
        rng = np.random.default_rng(0)
        vidx = torch.from_numpy(np.sort(rng.choice(self.body.n_vertices, cfg.n_loss_vertices, replace=False)))
        self.template, self.blend = (t.to(self.device) for t in self.body.vertex_basis(vidx))
        self.coeff_device = self._coefficient_device()

    def _coefficient_device(self) -> torch.device:
        if self.device.type == "cpu":
            return self.device
        try:
            self.body.anny.to(self.device)
            probe = torch.full((2, self.norm.mean.shape[0]), 0.5, device=self.device)
            assert self.body.blendshape_coefficients(probe).device.type == self.device.type
            return self.device
        except Exception as e:  # noqa: BLE001  (any failure: fall back to the CPU, which works)
            print(f"[losses] Anny on {self.device} failed ({type(e).__name__}: {e}); blendshape weights on the CPU")
            self.body.anny.to("cpu")
            return torch.device("cpu")

    def rest_vertices(self, shape: torch.Tensor) -> torch.Tensor:
        coeffs = self.body.blendshape_coefficients(shape.to(self.coeff_device)).to(self.device)
        return apply_blendshapes(self.template, self.blend, coeffs)

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict]:
        pred = pred.float()
        p = (pred - self.norm.mean) / self.norm.std
        t = (target - self.norm.mean) / self.norm.std
        param = ((p - t) ** 2).mean()
        clamped = torch.cat([pred[:, :N_PHENOTYPES].clamp(0, 1), pred[:, N_PHENOTYPES:].clamp(-1, 1)], 1)
        vp = self.rest_vertices(clamped)
        with torch.no_grad():
            vt = self.rest_vertices(target)
        vert_cm = (vp - vt).norm(dim=-1).mean() * 100
        loss = param + self.cfg.vertex_loss_weight * vert_cm
        return loss, {"param": param.detach(), "vertex_cm": vert_cm.detach()}


def _to_tensors(b: dict[str, np.ndarray], cfg: TrainConfig, rng: np.random.Generator | None) -> tuple:
    f = torch.from_numpy(b["front"]).float()[:, None]
    s = torch.from_numpy(b["side"]).float()[:, None]
    h = b["height"].copy()
    if rng is not None:
        h = h + rng.normal(0, cfg.height_noise_m, h.shape).astype(np.float32)
    return f, s, torch.from_numpy(h), torch.from_numpy(b["shape"])


class Batches:
    """Random training batches ``(front, side, height, shape)`` as tensors on the training device.

    On the CPU, silhouettes stay bit-packed and each batch is unpacked on demand. On a GPU,
    the whole set is unpacked into GPU memory once (65k pairs: 1.6 GB), so the GPU never
    waits for the CPU. Augmentations drawn here: typed-height noise and random mirroring.
    """

    def __init__(self, ds: SilhouetteDataset, cfg: TrainConfig) -> None:
        self.ds, self.cfg = ds, cfg
        self.device = torch.device(cfg.device)
        if self.device.type != "cpu":
            self.front = torch.from_numpy(ds.unpack(ds.front)).to(self.device)
            self.side = torch.from_numpy(ds.unpack(ds.side)).to(self.device)
            self.height = torch.from_numpy(ds.height).to(self.device)
            self.shape = torch.from_numpy(ds.shape).to(self.device)

    def sample(self, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        n = self.cfg.batch_size
        idx = rng.integers(0, len(self.ds), n)
        if self.device.type == "cpu":
            f, s, h, y = _to_tensors(self.ds.batch(idx), self.cfg, rng)
        else:
            i = torch.from_numpy(idx).to(self.device)
            f, s = self.front[i].float()[:, None], self.side[i].float()[:, None]
            noise = torch.from_numpy(rng.normal(0, self.cfg.height_noise_m, n).astype(np.float32))
            h, y = self.height[i] + noise.to(self.device), self.shape[i]
        if self.cfg.p_flip > 0:
            f, s = (self._flip(x, torch.from_numpy(rng.random(n) < self.cfg.p_flip)) for x in (f, s))
        return f, s, h, y

    def _flip(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.where(mask.to(self.device)[:, None, None, None], x.flip(-1), x)


def _autocast(device: torch.device):
    """bfloat16 for the CNN on a GPU; the loss and the body model stay in float32/64."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


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
    if stage == "fused_staged" and cfg.init:  # continue training a whole fused model
        from bodyshape.checkpoint import load_model

        trained = load_model(cfg.init)
        if trained.cfg.to_dict() != model.cfg.to_dict():
            raise BodyShapeError(f"{cfg.init} is another network ({trained.cfg.to_dict()}); cannot start from it")
        model.load_state_dict(trained.state_dict())
    elif stage == "fused_staged":
        for view in ("front", "side"):
            ck = torch.load(_stage_dir(cfg, view) / "final.pt", map_location="cpu", weights_only=False)
            enc = {k.split(f"encoders.{view}.", 1)[1]: v for k, v in ck["model"].items() if k.startswith(f"encoders.{view}.")}
            model.encoders[view].load_state_dict(enc)
    return model


def _param_groups(model: BodyShapeNet, cfg: TrainConfig, stage: str, progress: float) -> float:
    """Encoder learning-rate multiplier at this point of the stage (0 = frozen)."""
    if stage != "fused_staged":
        return 1.0
    return 0.0 if progress < cfg.frozen_fraction else cfg.finetune_lr_scale


def _means(rows: list[dict]) -> dict[str, float]:
    """Means of logged per-step values (tensors, possibly on the GPU: one transfer)."""
    keys = list(rows[0])
    stacked = torch.stack([torch.stack([torch.as_tensor(r[k], dtype=torch.float32) for k in keys]) for r in rows])
    return dict(zip(keys, stacked.float().mean(0).tolist(), strict=True))


def train_stage(cfg: TrainConfig, stage: str, train: SilhouetteDataset, val: SilhouetteDataset, losses: Losses) -> dict:
    from tqdm import tqdm

    sdir = _stage_dir(cfg, stage)
    sdir.mkdir(parents=True, exist_ok=True)
    if (sdir / "final.pt").exists():
        print(f"[{stage}] already trained, skipping")
        return json.loads((sdir / "summary.json").read_text())
    device = torch.device(cfg.device)
    model = build_stage_model(cfg, stage).to(device)
    enc_params = [p for n, p in model.named_parameters() if n.startswith("encoders.")]
    head_params = [p for n, p in model.named_parameters() if not n.startswith("encoders.")]
    opt = torch.optim.AdamW([{"params": enc_params}, {"params": head_params}], lr=cfg.lr, weight_decay=cfg.weight_decay)
    budget_s = cfg.seconds.get(stage)
    total_steps = None if budget_s else max(1, cfg.stage_samples(stage) // cfg.batch_size)
    steps_per_epoch = max(1, cfg.epoch_samples // cfg.batch_size)
    state = {"step": 0, "history": [], "seconds": 0.0, "best": None}
    last = sdir / "last.pt"
    best_model = None
    if last.exists():
        ck = torch.load(last, map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        state = {"best": None, **ck["state"]}
        best_model = ck.get("best_model")
        print(f"[{stage}] resuming at step {state['step']}/{total_steps or f'{budget_s} s'}")
    rng = np.random.default_rng([cfg.seed, STAGES.index(stage), state["step"]])
    batches = Batches(train, cfg)
    bar = tqdm(total=total_steps, initial=state["step"], desc=stage, unit="step")
    t0 = time.time() - state["seconds"]
    running: list[dict] = []

    def progress() -> float:
        """Fraction of the stage done: by steps, or by elapsed time under a time budget."""
        return (time.time() - t0) / budget_s if budget_s else state["step"] / total_steps

    while progress() < 1:
        model.train()
        frac = progress()
        enc_mult = _param_groups(model, cfg, stage, frac)
        lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * frac))  # cosine decay
        opt.param_groups[0]["lr"] = lr * enc_mult
        opt.param_groups[1]["lr"] = lr
        for p in enc_params:
            p.requires_grad_(enc_mult > 0)
        if enc_mult == 0:  # frozen encoders keep their BatchNorm statistics too
            for enc in model.encoders.values():
                enc.eval()
        f, s, h, y = batches.sample(rng)
        with _autocast(device):
            pred = model(f, s, h)
        loss, parts = losses(pred, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running.append({"loss": loss.detach(), **parts})  # tensors: no GPU sync per step
        state["step"] += 1
        bar.update()
        if state["step"] % 50 == 0:
            recent = _means(running[-50:])
            bar.set_postfix(loss=f"{recent['loss']:.3f}", vcm=f"{recent['vertex_cm']:.2f}")
        if state["step"] % steps_per_epoch == 0 or progress() >= 1:
            val_loss = validate(model, val, losses)
            mean = _means(running)
            state["history"].append({
                "step": state["step"], "samples": state["step"] * cfg.batch_size,
                "train_loss": mean["loss"], "train_vertex_cm": mean["vertex_cm"],
                **{f"val_{k}": v for k, v in val_loss.items()},
                "seconds": time.time() - t0,
            })
            val_total = val_loss["param"] + cfg.vertex_loss_weight * val_loss["vertex_cm"]
            if cfg.keep_best and (state["best"] is None or val_total < state["best"]["val_loss"]):
                state["best"] = {"step": state["step"], "val_loss": val_total}
                best_model = {k: v.detach().clone() for k, v in model.state_dict().items()}
            running = []
            state["seconds"] = time.time() - t0
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "state": state, "best_model": best_model},
                       last.with_suffix(".tmp"))
            last.with_suffix(".tmp").replace(last)
            print(f"[{stage}] step {state['step']}: " + json.dumps(state["history"][-1]))
    bar.close()
    if cfg.keep_best and best_model is not None:
        model.load_state_dict(best_model)
        print(f"[{stage}] keeping the model of step {state['best']['step']} (lowest validation loss)")
    model.cpu()
    summary = {"stage": stage, "steps": state["step"], "samples": state["step"] * cfg.batch_size,
               "seconds": round(time.time() - t0, 1), "history": state["history"], "device": str(device),
               "best": state["best"]}
    torch.save({"model": model.state_dict(), "net_config": model.cfg.to_dict(), "summary": summary}, sdir / "final.pt")
    (sdir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


@torch.no_grad()
def validate(model: BodyShapeNet, val: SilhouetteDataset, losses: Losses) -> dict:
    model.eval()
    parts = []
    for i in range(0, len(val), 256):
        f, s, h, y = (t.to(losses.device) for t in _to_tensors(val.batch(np.arange(i, min(i + 256, len(val)))), TrainConfig(), None))
        with _autocast(losses.device):
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


def main(cfg: TrainConfig, full: SilhouetteDataset | None = None) -> dict:
    """Train ``cfg.stages`` in order on ``full`` (default: the dataset at ``cfg.data``)."""
    torch.set_num_threads(cfg.threads)
    if cfg.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BodyShapeError(f"--device {cfg.device}: PyTorch sees no CUDA GPU here; use --device cpu")
        torch.backends.cudnn.benchmark = True
    unknown = set(cfg.stages) - set(STAGES)
    if unknown:
        raise BodyShapeError(f"unknown stages {sorted(unknown)}; choose from {STAGES}")
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    (Path(cfg.out) / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
    print("config:", json.dumps(dataclasses.asdict(cfg)))
    full = full if full is not None else load_dataset(cfg.data)
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
    p.add_argument("--device", default=d.device, help="cpu or cuda")
    p.add_argument("--seconds", type=float, nargs=3, metavar=("FRONT", "SIDE", "FUSED"), default=None,
                   help="time budget per stage in seconds (replaces --samples; the scratch control keeps samples)")
    p.add_argument("--p-flip", type=float, default=d.p_flip, help="probability of mirroring each view")
    p.add_argument("--keep-best", action="store_true", help="final model = lowest validation loss")


def run(args: argparse.Namespace) -> int:
    net = {"widths": tuple(args.widths)} if args.widths else {}
    cfg = TrainConfig(
        data=args.data, out=args.out, weights_out=args.weights_out, val_size=args.val_size,
        batch_size=args.batch_size, epoch_samples=args.epoch_samples, threads=args.threads,
        samples=dict(zip(("front", "side", "fused_staged"), args.samples, strict=True)),
        stages=tuple(args.stages), net=net, device=args.device, p_flip=args.p_flip, keep_best=args.keep_best,
        seconds=dict(zip(("front", "side", "fused_staged"), args.seconds, strict=True)) if args.seconds else {},
    )
    main(cfg)
    return 0
