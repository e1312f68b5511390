"""``bodyshape ship RUN``: make a training run's weights the shipped ones, then re-export.

Training writes only into its run folder (``runs/<name>/weights/``); this is the one step
that changes ``bodyshape/weights/`` (``bodyshape.paths.WEIGHTS_DIR``). Each stage's file is
copied byte for byte (its metadata keeps the training configuration), optionally under
another name: ``--stages fused_staged=fused_equal_budget`` ships the run's staged fused
model as ``fused_equal_budget.safetensors``. When ``fused.safetensors`` (the served model)
changes, the Triton repository is exported again from it (``bodyshape export``), and the
files fitted per served model (the measurement correction, the 80% intervals) are shipped with
it when the run folder holds ones fitted for exactly those weights (``bodyshape fit-correction
--weights runs/<name>/weights``, ``bodyshape calibrate-intervals --weights ...``); otherwise
the command says which to fit.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from bodyshape.errors import BodyShapeError
from training.config import FUSED_STAGED, SERVED_WEIGHTS, STAGE_VIEWS, STAGES, WEIGHT_NAMES, run_weights_dir

SUFFIX = ".safetensors"


def parse_stage(spec: str) -> tuple[str, str]:
    """``STAGE`` or ``STAGE=NAME`` -> (stage, shipped file name without ``.safetensors``)."""
    stage, _, name = spec.partition("=")
    if stage not in STAGES:
        raise BodyShapeError(f"unknown stage {stage!r} in {spec!r}; choose from {', '.join(STAGES)}")
    name = name.removesuffix(SUFFIX) if name else WEIGHT_NAMES[stage]
    if not name or "/" in name or name.startswith("."):
        raise BodyShapeError(f"{spec!r}: the file name after '=' must be a plain name, such as fused_equal_budget")
    return stage, name


def _plan(run: str, stages: list[str] | None) -> list[tuple[Path, str]]:
    """(source file, shipped name) for each stage to ship, every source checked before anything is copied."""
    from bodyshape.checkpoint import read_metadata, read_train_config

    src_dir = run_weights_dir(run)
    specs = [parse_stage(s) for s in stages] if stages else [
        (s, WEIGHT_NAMES[s]) for s in STAGES if (src_dir / f"{WEIGHT_NAMES[s]}{SUFFIX}").exists()]
    if not specs:
        raise BodyShapeError(f"{src_dir} holds no trained weights; train first (`bodyshape train --out {run}`)")
    names = [name for _, name in specs]
    if len(set(names)) != len(names):
        raise BodyShapeError(f"two stages would be shipped under the same name: {names}")
    plan = []
    for stage, name in specs:
        src = src_dir / f"{WEIGHT_NAMES[stage]}{SUFFIX}"
        if not src.exists():
            raise BodyShapeError(f"{src} not found: stage {stage} of run {run} has not finished")
        cfg, _ = read_metadata(src)
        if name == SERVED_WEIGHTS and tuple(cfg.views) != STAGE_VIEWS[FUSED_STAGED]:
            raise BodyShapeError(f"{SERVED_WEIGHTS}{SUFFIX} is the served two-view model; {src} reads {cfg.views}")
        if read_train_config(src) is None:
            print(f"note: {src} has no training configuration in its metadata (made before it was stored)")
        plan.append((src, name))
    return plan


def _copy(src: Path, dst: Path, note: str = "") -> Path:
    """Byte-for-byte, through a temporary file: a reader never sees half a file."""
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    tmp.replace(dst)
    print(f"shipped {src} -> {dst}" + (f" {note}" if note else ""))
    return dst


def companion_sha256(path: Path) -> str:
    """The sha256 of the fused weights a per-model file (correction or intervals) was fitted for."""
    from bodyshape.correction import CORRECTION_FILES, MeasurementCorrection
    from bodyshape.uncertainty import IntervalModel

    if path.name in CORRECTION_FILES.values():
        return str(MeasurementCorrection.load(path).info.get("weights_sha256", ""))
    return IntervalModel.load(path).weights_sha256


def ship_companions(src_dir: Path, to: Path, served: Path) -> list[Path]:
    """Copy the run's correction and intervals into ``to`` when they were fitted for ``served``
    (the fused file just shipped); print the command for each one that is missing or stale."""
    from bodyshape.correction import CORRECTION_FILE, CORRECTION_FILES
    from bodyshape.uncertainty import INTERVALS_FILE, file_sha256

    sha, written = file_sha256(served), []
    fitted = CORRECTION_FILES["fitted"]
    for name, command in ((CORRECTION_FILE, "bodyshape fit-correction"), (fitted, "bodyshape fit-correction --clothing fitted"),
                          (INTERVALS_FILE, "bodyshape calibrate-intervals")):  # fmt: skip
        src = src_dir / name
        if src.exists() and companion_sha256(src) == sha:
            written.append(_copy(src, to / name, "(fitted for these weights)"))
            continue
        if name == fitted:  # optional: without it fitted clothing is corrected by the general one
            if (to / name).exists() and companion_sha256(to / name) != sha:
                (to / name).unlink()
                print(f"removed {to / name} (fitted for other weights); fitted clothing now uses {CORRECTION_FILE} "
                      f"until `{command}`")  # fmt: skip
            continue
        why = "fitted for other weights" if src.exists() else "not in the run folder"
        print(f"{name}: {why}; run `{command}` (fitted per model)")
        if name == CORRECTION_FILE:  # the intervals are those of the corrected measurements
            print("then `bodyshape calibrate-intervals`")
            break
    return written


def ship(run: str, stages: list[str] | None = None, to: Path | None = None,
         repository: Path | None = None, export: bool = True) -> list[Path]:
    """Copy the run's weights into ``to`` (default ``WEIGHTS_DIR``) and, when the served model
    changed, export the Triton repository (default ``MODEL_REPOSITORY``) from it. Returns the
    files written."""
    from bodyshape import paths  # looked up at call time: tests point them elsewhere

    to = paths.WEIGHTS_DIR if to is None else Path(to)
    to.mkdir(parents=True, exist_ok=True)
    written = []
    for src, name in _plan(run, stages):
        written.append(_copy(src, to / f"{name}{SUFFIX}"))
    served = to / f"{SERVED_WEIGHTS}{SUFFIX}"
    if served not in written:
        print(f"{served.name} unchanged: the Triton repository needs no export")
    elif export:
        from export.export_model import export_all

        export_all(served, paths.MODEL_REPOSITORY if repository is None else Path(repository))
    else:
        print(f"--no-export: run `bodyshape export --weights {served}` before serving")
    if served in written:  # the old correction and intervals were fitted for the old fused weights
        written += ship_companions(run_weights_dir(run), to, served)
    return written


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="the training run: a name under runs/ (e.g. main, one_gpu) or a path with a '/'")
    p.add_argument("--stages", nargs="+", metavar="STAGE[=NAME]", default=None,
                   help=f"stages to ship ({', '.join(STAGES)}; default: every one the run finished), "
                        "each optionally under another file name, e.g. fused_staged=fused_equal_budget")
    p.add_argument("--to", type=Path, default=None, help="weights folder (default bodyshape/weights)")
    p.add_argument("--repository", type=Path, default=None, help="Triton model repository (default model_repository)")
    p.add_argument("--no-export", action="store_true", help="copy only; do not re-export the Triton repository")


def run(args: argparse.Namespace) -> int:
    ship(args.run, args.stages, args.to, args.repository, export=not args.no_export)
    return 0
