"""Benchmark: the training loss with Anny's blendshape coefficients against the vectorised ones.

``python -m training.loss_bench [--batch 256] [--device cpu|cuda]``. Prints, for each way of
computing the coefficients, the ATen operations one call runs (the profiler's count, nested
calls included) and the wall time of one training-loss forward and backward
(``training.train.Losses``: the prediction's coefficients with gradient, the target's
without), and the operations of a whole training step of the fused network (CNN forward and
backward, loss, AdamW), side by side in one run, and their ratios. On a GPU every operation is a kernel
launch, so the operation count is what the one-GPU recipe's step time follows
(docs/decisions.md); the CPU time is printed too, but there the CNN dominates a step.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

from bodyshape.body_model import N_PHENOTYPES, get_body_model
from bodyshape.nets import BodyShapeNet, NetConfig
from bodyshape.silhouette import CANVAS_HW
from training.batches import autocast
from training.config import TrainConfig
from training.train import Losses


def annys_coefficients(body) -> Callable[[torch.Tensor], torch.Tensor]:  # noqa: ANN001
    """Anny's own function, as ``BodyModel`` called it until 2026-12-03."""
    a = body.anny

    def coefficients(shape: torch.Tensor) -> torch.Tensor:
        s = shape.to(device=body.device, dtype=a.dtype)
        return a._get_phenotype_blendshape_coefficients(
            s[:, :N_PHENOTYPES], s[:, N_PHENOTYPES:], s.new_zeros(len(s), 0)
        )

    return coefficients


def aten_ops(fn: Callable[[], object]) -> int:
    """ATen operations one call of ``fn`` runs (the profiler's events, nested ones included)."""
    from torch.profiler import profile

    with profile() as prof:
        fn()
    return sum(1 for e in prof.events() if e.name.startswith("aten::"))


def seconds_per_call(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(3):
        fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - t0) / repeats


def main(batch: int = 256, device: str = "cpu", repeats: int = 20) -> dict[str, dict[str, float]]:
    dev = torch.device(device)
    cfg = TrainConfig(device=device)
    shapes = get_body_model("cpu").sample_shapes(max(batch, 512), seed=5).astype(np.float32)
    losses = Losses(cfg, shapes)
    target = torch.from_numpy(shapes[:batch]).to(dev)
    pred = (target + 0.02 * torch.randn_like(target)).requires_grad_(True)
    net = BodyShapeNet(NetConfig()).to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, fused=True)  # as training.train.StageRun
    views = torch.rand(2, batch, 1, *CANVAS_HW, device=dev)
    height = torch.full((batch,), 1.7, device=dev)
    results: dict[str, dict[str, float]] = {}
    loss_steps: dict[str, Callable[[], None]] = {}
    for name, coefficients in (("anny", annys_coefficients(losses.body)), ("vectorised", losses.body.coefficients)):
        def loss_step(c: Callable = coefficients) -> None:
            losses.coefficients = c
            loss, _ = losses(pred, target)
            loss.backward()

        def training_step(c: Callable = coefficients) -> None:
            losses.coefficients = c
            with autocast(dev):
                out = net(views[0], views[1], height)
            loss, _ = losses(out, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        results[name] = {
            "coefficient_ops": aten_ops(lambda c=coefficients: c(pred.detach())),
            "loss_step_ops": aten_ops(loss_step),
            "training_step_ops": aten_ops(training_step),
        }
        loss_steps[name] = loss_step
    # The two timed in turns, the best of 5 rounds each: a busy moment hits both alike.
    for name in loss_steps:
        results[name]["loss_step_ms"] = float("inf")
    for _ in range(5):
        for name, loss_step in loss_steps.items():
            ms = 1000 * seconds_per_call(loss_step, dev, max(1, repeats // 5))
            results[name]["loss_step_ms"] = min(results[name]["loss_step_ms"], ms)
    losses.coefficients = losses.body.coefficients
    adamw = {}
    for name, kw in (("per tensor", {"foreach": False}), ("fused", {"fused": True})):
        optimiser = torch.optim.AdamW(net.parameters(), lr=1e-4, **kw)
        optimiser.step()  # its state exists: count a step like every later one
        adamw[name] = aten_ops(optimiser.step)
    print(f"training loss, batch {batch}, {dev} ({torch.get_num_threads()} threads), best of 5 rounds of {max(1, repeats // 5)}")
    print(f"{'coefficients':<12} {'ops/call':>9} {'ops/loss step':>14} {'ms/loss step':>13} {'ops/training step':>18}")
    for name, r in results.items():
        print(f"{name:<12} {r['coefficient_ops']:>9} {r['loss_step_ops']:>14} {r['loss_step_ms']:>13.2f} "
              f"{r['training_step_ops']:>18}")
    a, v = results["anny"], results["vectorised"]
    print(f"ratio anny/vectorised: ops per call {a['coefficient_ops'] / v['coefficient_ops']:.1f}x, "
          f"ops per loss step {a['loss_step_ops'] / v['loss_step_ops']:.1f}x, "
          f"time per loss step {a['loss_step_ms'] / v['loss_step_ms']:.1f}x, "
          f"ops per training step (fused CNN, loss, AdamW) {a['training_step_ops'] / v['training_step_ops']:.1f}x")
    print(f"AdamW step of the fused network ({sum(1 for _ in net.parameters())} tensors): "
          f"{adamw['per tensor']} ops per tensor, {adamw['fused']} fused ({adamw['per tensor'] / adamw['fused']:.1f}x)")
    return results


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=20)
    a = p.parse_args()
    main(a.batch, a.device, a.repeats)
