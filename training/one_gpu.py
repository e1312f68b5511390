"""The one-GPU recipe: generate data on every CPU core while the GPU trains, in a fixed time.

Made for a lent GPU machine (one H100/H200 and 16 cores, held for minutes, not hours). On
such a machine rendering silhouettes (the CPU) is the bottleneck and the GPU waits, so the
two overlap:

    t=0          build Anny's cache once (the generator's workers then load it)
    then         `bodyshape generate` with every core but one, into ``<work>/data``
    +first_data  load the shards finished so far; train front, then side (each ``single_s``)
    then         stop the generator; load every finished shard; train fused_staged (``fused_s``,
                 shortened to end by ``deadline_s`` when that is given)
    end          shipped-format weights in ``weights_out`` and ``<work>/recipe.json``

With ``init_fused`` (a trained fused model file) the single-view stages are skipped and
the fused stage fine-tunes that model on freshly generated bodies: a second lease continues
where the first stopped.

The stages are :func:`training.train.main` with time budgets (``TrainConfig.seconds``): the
cosine schedule runs on elapsed time, so the recipe ends on time whatever the GPU's speed.
The fused stage sees more bodies than the single-view stages, all of them with the same
data configuration as ``data/train`` (``training.config.DataConfig``, another seed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bodyshape.errors import BodyShapeError


@dataclass(frozen=True)
class RecipeConfig:
    work: str = "runs/one_gpu"
    weights_out: str = "runs/one_gpu/weights"
    data_seed: int = 3  # data/train is seed 0, the test sets 1 and 2
    max_samples: int = 1_000_000  # the generator is stopped long before this
    workers: int | None = None  # default: all cores but one
    first_data_s: float = 110.0
    single_s: float = 40.0
    fused_s: float = 220.0
    deadline_s: float | None = None  # finish by then (seconds from start): shortens the fused stage
    batch_size: int = 256
    lr: float = 2e-3
    device: str = "cuda"
    p_flip: float = 0.5
    val_size: int = 1000
    init_fused: str | None = None  # fine-tune this fused model instead (no single-view stages)


#: Command-line help for each field of :class:`RecipeConfig`.
HELP = {
    "work": "folder for the generated data, checkpoints, logs and recipe.json",
    "weights_out": "where the front/side/fused .safetensors go (copy them to bodyshape/weights to ship)",
    "data_seed": "seed of the generated data (data/train is 0, the test sets 1 and 2)",
    "max_samples": "upper bound for the generator (it is stopped long before)",
    "workers": "generator processes (default: all cores but one)",
    "first_data_s": "seconds of generation before the single-view stages start",
    "single_s": "seconds for each of the front and side stages",
    "fused_s": "seconds for the fused stage",
    "deadline_s": "finish within this many seconds of the start (shortens the fused stage)",
    "batch_size": "training batch size",
    "lr": "peak learning rate (cosine decay over each stage's time)",
    "device": "cuda, or cpu for a dry run",
    "p_flip": "probability of mirroring each view",
    "val_size": "pairs held out for validation (the last ones loaded)",
    "init_fused": "fine-tune this fused model file instead of training front, side and fused",
}


def _samples_done(data: Path) -> int:
    """Samples in the finished shards (each is renamed into place when whole)."""
    manifest = data / "manifest.json"
    if not manifest.exists():
        return 0
    shard_size = json.loads(manifest.read_text())["config"]["shard_size"]
    return len(list(data.glob("shard_*.npz"))) * shard_size


def _stop(proc: subprocess.Popen, data: Path) -> None:
    """Stop the generator and its worker pool (its own process group)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for tmp in data.glob("*.tmp"):
        tmp.unlink()


def run_recipe(rc: RecipeConfig) -> dict:
    import torch

    from bodyshape.body_model import get_body_model
    from bodyshape.measurements import get_measurer
    from training.dataset import load_dataset
    from training.train import TrainConfig, main

    if rc.device.startswith("cuda") and not torch.cuda.is_available():  # say so before minutes of work
        raise BodyShapeError(f"--device {rc.device}: PyTorch sees no CUDA GPU here; use --device cpu for a dry run")
    t0 = time.time()
    work = Path(rc.work)
    data = work / "data"
    work.mkdir(parents=True, exist_ok=True)
    report: dict = {"config": dataclasses.asdict(rc), "events": {}}

    def mark(event: str) -> None:
        report["events"][event] = round(time.time() - t0, 1)
        print(f"[recipe] {time.time() - t0:7.1f} s  {event}", flush=True)

    get_body_model()
    get_measurer().joint_regressor  # noqa: B018  (the workers load the cache this builds)
    mark("body model ready")
    workers = rc.workers or max(1, (os.cpu_count() or 2) - 1)
    log = open(work / "generate.log", "w")  # noqa: SIM115  (closed below)
    cmd = [sys.executable, "-m", "bodyshape.cli", "generate", "--n", str(rc.max_samples), "--seed", str(rc.data_seed),
           "--out", str(data), "--workers", str(workers)]
    gen = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    gen_start = time.time()
    mark(f"generator started ({workers} workers)")
    try:
        need = rc.val_size + 4 * rc.batch_size
        while time.time() - gen_start < rc.first_data_s or _samples_done(data) < need:
            if gen.poll() is not None:
                raise BodyShapeError(f"the generator stopped (code {gen.returncode}); see {work / 'generate.log'}")
            time.sleep(2)
        cfg = TrainConfig(
            data=str(data), out=str(work / "run"), weights_out=rc.weights_out, val_size=rc.val_size,
            batch_size=rc.batch_size, lr=rc.lr, epoch_samples=rc.batch_size * 500, threads=1,
            stages=("front", "side"), device=rc.device, p_flip=rc.p_flip, keep_best=True,
            seconds={"front": rc.single_s, "side": rc.single_s},
        )
        single: dict = {}
        if rc.init_fused:  # fine-tuning: the whole model trains from the start, nothing frozen
            cfg = dataclasses.replace(cfg, init=rc.init_fused, frozen_fraction=0.0, finetune_lr_scale=1.0)
        else:
            first = load_dataset(data, partial=True)
            mark(f"single-view data: {len(first)} pairs")
            single = main(cfg, first)
            mark("single-view stages done")
    finally:
        _stop(gen, data)
        log.close()
    gen_seconds = time.time() - gen_start
    full = load_dataset(data, partial=True)
    report["generation"] = {"pairs": len(full), "seconds": round(gen_seconds, 1), "workers": workers,
                            "pairs_per_second": round(len(full) / gen_seconds, 1)}
    mark(f"fused data: {len(full)} pairs")
    fused_s = rc.fused_s
    if rc.deadline_s is not None:  # leave 20 s for loading, validation and export
        fused_s = min(fused_s, rc.deadline_s - (time.time() - t0) - 20)
        if fused_s < 10:
            raise BodyShapeError(f"no time left for the fused stage before the {rc.deadline_s} s deadline")
    report["fused_seconds"] = round(fused_s, 1)
    fused = main(dataclasses.replace(cfg, stages=("fused_staged",), seconds={"fused_staged": fused_s}), full)
    mark("fused stage done")
    report["stages"] = {}
    for stage, s in {**single, **fused}.items():
        last = s["history"][-1]
        report["stages"][stage] = {
            "pairs": len(first) if stage in single else len(full), "steps": s["steps"], "samples": s["samples"],
            "seconds": s["seconds"], "samples_per_second": round(s["samples"] / s["seconds"], 1),
            "best": s["best"], "final_val_vertex_mm": round(last["val_vertex_cm"] * 10, 2), "device": s["device"],
        }
    (work / "recipe.json").write_text(json.dumps(report, indent=1))
    return report


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = RecipeConfig()
    for f in dataclasses.fields(RecipeConfig):
        default = getattr(d, f.name)
        kind = {"int": int, "float": float, "str": str}.get(str(f.type).replace(" | None", ""), str)
        p.add_argument("--" + f.name.replace("_", "-"), type=kind, default=default, help=f"{HELP[f.name]} (default {default})")


def run(args: argparse.Namespace) -> int:
    rc = RecipeConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(RecipeConfig)})
    report = run_recipe(rc)
    print(json.dumps(report, indent=1))
    return 0
