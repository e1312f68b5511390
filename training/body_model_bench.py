"""Benchmark: the body model's two hot paths, Anny's own way against this project's.

``python -m training.body_model_bench [--batch 256] [--device cpu|cuda] [--skip-refit]``.

**The training loss.** Prints, for each way of
computing the coefficients, the ATen operations one call runs (the profiler's count, nested
calls included) and the wall time of one training-loss forward and backward
(``training.train.Losses``: the prediction's coefficients with gradient, the target's
without), and the operations of a whole training step of the fused network (CNN forward and
backward, loss, AdamW), side by side in one run, and their ratios. On a GPU every operation is a kernel
launch, so the operation count is what the one-GPU recipe's step time follows
(docs/decisions.md); the CPU time is printed too, but there the CNN dominates a step.

**The refit** (bodyshape/refit.py, twice on every page request and on every evaluated body):
each of its steps measures 21 rest meshes. The time of one mesh batch and of one whole refit
(two steps, measuring included), with the meshes from Anny's full forward (posed and skinned,
the rest mesh taken from it; the page's way until 2026-12-03) and from
``BodyModel.rest_vertices`` (no posing), on the CPU, in turns, best of 5 rounds.
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


def refit_times(rounds: int = 5) -> dict[str, dict[str, float]]:
    """Seconds per mesh batch of a refit step and per whole refit, Anny's forward against
    ``BodyModel.rest_vertices``; printed side by side."""
    from bodyshape.measurements import MEASUREMENT_NAMES
    from bodyshape.refit import refit

    model = get_body_model("cpu")
    shapes = model.sample_shapes(21, seed=12)
    person = shapes[0].astype(np.float32)
    change = np.zeros(len(MEASUREMENT_NAMES))
    change[[MEASUREMENT_NAMES.index(k) for k in ("chest", "waist", "hip")]] = (0.02, -0.015, 0.01)
    ways = {"anny forward": lambda s: model.forward(s).rest_vertices, "rest_vertices": None}
    best = {w: {"mesh_s": float("inf"), "refit_s": float("inf")} for w in ways}
    try:
        for _ in range(rounds):
            for way, fn in ways.items():
                if fn is None:
                    model.__dict__.pop("rest_vertices", None)  # the class's method
                else:
                    model.rest_vertices = fn  # this instance only, restored below
                t0 = time.perf_counter()
                model.rest_vertices(shapes)
                t1 = time.perf_counter()
                refit(person, 1.7, change)
                t2 = time.perf_counter()
                best[way]["mesh_s"] = min(best[way]["mesh_s"], t1 - t0)
                best[way]["refit_s"] = min(best[way]["refit_s"], t2 - t1)
    finally:
        model.__dict__.pop("rest_vertices", None)
    print(f"refit (two steps, 21 meshes each, measured), cpu ({torch.get_num_threads()} threads), best of {rounds}")
    print(f"{'meshes from':<14} {'ms/21 meshes':>13} {'ms/refit':>9}")
    for way, b in best.items():
        print(f"{way:<14} {1000 * b['mesh_s']:>13.0f} {1000 * b['refit_s']:>9.0f}")
    a, r = best["anny forward"], best["rest_vertices"]
    print(f"ratio: meshes {a['mesh_s'] / r['mesh_s']:.1f}x, refit {a['refit_s'] / r['refit_s']:.1f}x")
    return best


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--skip-refit", action="store_true", help="the training loss only (the GPU lease)")
    a = p.parse_args()
    main(a.batch, a.device, a.repeats)
    if not a.skip_refit:
        refit_times()
