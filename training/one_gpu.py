"""The one-GPU recipe: generate data on every CPU core while the GPU trains, in a fixed time.

Made for a lent GPU machine (one H100/H200 and 16 cores, held for minutes, not hours). On
such a machine rendering silhouettes (the CPU) is the bottleneck and the GPU waits, so the
two overlap:

    t=0          build Anny's cache once (the generator's workers then load it)
    then         `bodyshape generate` with every core but one, into ``<work>/data``
    +first_data  load the shards finished so far; train front, then side (each ``single_s``)
    then         stop the generator; load every finished shard; train fused_staged (``fused_s``,
                 shortened to end by ``deadline_s`` when that is given)
    end          shipped-format weights in ``<work>/weights`` and ``<work>/recipe.json``

``<work>`` is a training run folder (:func:`training.config.run_dir`: a name under
``runs/``, default ``runs/one_gpu``): the stages' checkpoints are in it too, and
``bodyshape ship one_gpu`` makes its weights the shipped ones.

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
from typing import IO, TYPE_CHECKING, NamedTuple

from bodyshape.errors import BodyShapeError

if TYPE_CHECKING:
    from training.config import TrainConfig


@dataclass(frozen=True)
class RecipeConfig:
    work: str = "one_gpu"  # run folder: a name under runs/ or a path with a '/'
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
    pose: str = "capture"  # training pose distribution (training.config.POSES): capture or wide
    silhouettes: str = "bits"  # what the shards store (training.generate.SILHOUETTE_STORES)
    random_phase: bool = False  # read coverage canvases at a random sub-pixel phase (needs coverage)


#: Command-line help for each field of :class:`RecipeConfig`.
HELP = {
    "work": "run folder (a name under runs/, or a path with a '/') for the generated data, checkpoints, logs, "
            "recipe.json and weights/ (`bodyshape ship` makes those the shipped ones)",
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
    "pose": "pose distribution of the generated data: capture (the shipped model's) or wide (stance, arms, lean)",
    "silhouettes": "what the generated shards store: bits (0/1 bodies) or coverage (the canvases the page serves)",
    "random_phase": "read each coverage canvas at a random sub-pixel phase, as the served reader does (needs coverage)",
    "val_size": "pairs held out for validation (the last ones loaded)",
    "init_fused": "fine-tune this fused model file instead of training front, side and fused",
}


def check_recipe(rc: RecipeConfig) -> None:
    """Refuse a recipe that could only fail after minutes of generation."""
    from training.config import POSES
    from training.generate import check_silhouette_store

    if rc.pose not in POSES:
        raise BodyShapeError(f"unknown --pose {rc.pose!r}; choose from {', '.join(POSES)}")
    check_silhouette_store(rc.silhouettes)
    if rc.random_phase and rc.silhouettes != "coverage":
        raise BodyShapeError("--random-phase reads coverage canvases: add --silhouettes coverage")


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


class _Clock:
    """Seconds since the recipe started, and the events of the report."""

    def __init__(self, report: dict) -> None:
        self.t0 = time.time()
        self.events = report.setdefault("events", {})

    def elapsed(self) -> float:
        return time.time() - self.t0

    def mark(self, event: str) -> None:
        self.events[event] = round(self.elapsed(), 1)
        print(f"[recipe] {self.elapsed():7.1f} s  {event}", flush=True)


def _start_generator(rc: RecipeConfig, work: Path, workers: int) -> tuple[subprocess.Popen, IO]:
    """``bodyshape generate`` into ``<work>/data``, in its own process group (stopped by :func:`_stop`)."""
    log = open(work / "generate.log", "w")  # noqa: SIM115  (closed by the caller)
    cmd = [sys.executable, "-m", "bodyshape.cli", "generate", "--n", str(rc.max_samples), "--seed", str(rc.data_seed),
           "--out", str(work / "data"), "--workers", str(workers), "--pose", rc.pose,
           "--silhouettes", rc.silhouettes]
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True), log


def _wait_for_data(rc: RecipeConfig, gen: subprocess.Popen, work: Path) -> None:
    """Wait ``first_data_s``, and until there is enough data for validation plus a few batches."""
    start, need = time.time(), rc.val_size + 4 * rc.batch_size
    while time.time() - start < rc.first_data_s or _samples_done(work / "data") < need:
        if gen.poll() is not None:
            raise BodyShapeError(f"the generator stopped (code {gen.returncode}); see {work / 'generate.log'}")
        time.sleep(2)


def _train_config(rc: RecipeConfig, work: Path) -> TrainConfig:
    """The single-view stages' :class:`TrainConfig` (the fused stage replaces stages and seconds)."""
    from training.config import FRONT, SIDE, TrainConfig

    cfg = TrainConfig(
        data=str(work / "data"), out=str(work), val_size=rc.val_size,
        batch_size=rc.batch_size, lr=rc.lr, epoch_samples=rc.batch_size * 500, threads=1,
        stages=(FRONT, SIDE), device=rc.device, p_flip=rc.p_flip, keep_best=True, random_phase=rc.random_phase,
        seconds={FRONT: rc.single_s, SIDE: rc.single_s},
    )
    if rc.init_fused:  # fine-tuning: the whole model trains from the start, nothing frozen
        cfg = dataclasses.replace(cfg, init=rc.init_fused, frozen_fraction=0.0, finetune_lr_scale=1.0)
    return cfg


class _SingleView(NamedTuple):
    cfg: TrainConfig
    summaries: dict  # stage -> summary (empty when fine-tuning)
    pairs: int  # pairs the single-view stages trained on
    gen_seconds: float  # how long the generator ran
    workers: int


def _single_view_stages(rc: RecipeConfig, work: Path, clock: _Clock) -> _SingleView:
    """Generate in the background; train front and side on the first shards; stop the generator."""
    from training.dataset import load_dataset
    from training.train import main

    workers = rc.workers or max(1, (os.cpu_count() or 2) - 1)
    gen, log = _start_generator(rc, work, workers)
    gen_start = time.time()
    clock.mark(f"generator started ({workers} workers)")
    try:
        _wait_for_data(rc, gen, work)
        cfg, single, pairs = _train_config(rc, work), {}, 0
        if not rc.init_fused:
            first = load_dataset(work / "data", partial=True)
            pairs = len(first)
            clock.mark(f"single-view data: {pairs} pairs")
            single = main(cfg, first)
            clock.mark("single-view stages done")
    finally:
        _stop(gen, work / "data")
        log.close()
    return _SingleView(cfg, single, pairs, time.time() - gen_start, workers)


def _fused_seconds(rc: RecipeConfig, elapsed: float) -> float:
    """The fused stage's budget, shortened to end by the deadline (20 s left for loading, validation, export)."""
    if rc.deadline_s is None:
        return rc.fused_s
    fused_s = min(rc.fused_s, rc.deadline_s - elapsed - 20)
    if fused_s < 10:
        raise BodyShapeError(f"no time left for the fused stage before the {rc.deadline_s} s deadline")
    return fused_s


def _stage_report(summaries: dict, pairs: dict) -> dict:
    out = {}
    for stage, s in summaries.items():
        out[stage] = {
            "pairs": pairs[stage], "steps": s["steps"], "samples": s["samples"],
            "seconds": s["seconds"], "samples_per_second": round(s["samples"] / s["seconds"], 1),
            "best": s["best"], "final_val_vertex_mm": round(s["history"][-1]["val_vertex_cm"] * 10, 2),
            "device": s["device"],
        }
    return out


def run_recipe(rc: RecipeConfig) -> dict:
    """Run the recipe (see the module's docstring); returns the report also written to ``<work>/recipe.json``."""
    import torch

    from bodyshape.body_model import get_body_model
    from bodyshape.measurements import get_measurer
    from training.config import FUSED_STAGED, run_dir
    from training.dataset import load_dataset
    from training.train import main

    if rc.device.startswith("cuda") and not torch.cuda.is_available():  # say so before minutes of work
        raise BodyShapeError(f"--device {rc.device}: PyTorch sees no CUDA GPU here; use --device cpu for a dry run")
    check_recipe(rc)
    work = run_dir(rc.work)
    work.mkdir(parents=True, exist_ok=True)
    report: dict = {"config": dataclasses.asdict(rc)}
    clock = _Clock(report)
    get_body_model()
    get_measurer().joint_regressor  # noqa: B018  (the workers load the cache this builds)
    clock.mark("body model ready")
    sv = _single_view_stages(rc, work, clock)
    full = load_dataset(work / "data", partial=True)
    report["generation"] = {"pairs": len(full), "seconds": round(sv.gen_seconds, 1), "workers": sv.workers,
                            "pairs_per_second": round(len(full) / sv.gen_seconds, 1)}
    clock.mark(f"fused data: {len(full)} pairs")
    fused_s = _fused_seconds(rc, clock.elapsed())
    report["fused_seconds"] = round(fused_s, 1)
    fused = main(dataclasses.replace(sv.cfg, stages=(FUSED_STAGED,), seconds={FUSED_STAGED: fused_s}), full)
    clock.mark("fused stage done")
    pairs = {**dict.fromkeys(sv.summaries, sv.pairs), **dict.fromkeys(fused, len(full))}
    report["stages"] = _stage_report({**sv.summaries, **fused}, pairs)
    (work / "recipe.json").write_text(json.dumps(report, indent=1))
    return report


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = RecipeConfig()
    for f in dataclasses.fields(RecipeConfig):
        default = getattr(d, f.name)
        if isinstance(default, bool):
            p.add_argument("--" + f.name.replace("_", "-"), action=argparse.BooleanOptionalAction, default=default,
                           help=f"{HELP[f.name]} (default {default})")
            continue
        kind = {"int": int, "float": float, "str": str}.get(str(f.type).replace(" | None", ""), str)
        p.add_argument("--" + f.name.replace("_", "-"), type=kind, default=default, help=f"{HELP[f.name]} (default {default})")


def run(args: argparse.Namespace) -> int:
    rc = RecipeConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(RecipeConfig)})
    report = run_recipe(rc)
    print(json.dumps(report, indent=1))
    return 0
