"""Synthetic dataset generator: seeded, sharded, resumable, parallel over cores.

Layout of an output folder::

    manifest.json            config, labels, shard list (written last, rewritten on resume)
    shard_00000.npz          samples [0, shard_size), compressed
    shard_00001.npz          ...

Each shard holds ``front`` and ``side``: the normalised silhouettes, (N, H, W/8) bit-packed 0/1
bodies, or with ``silhouettes="coverage"`` (N, H, W) uint8 coverage canvases,
``shape`` (N, N_SHAPE), ``height`` (N,) metres and ``measurements`` (N, M) metres (rest pose).
Shard ``i`` is a pure function of (config, seed, i): the same arguments give the same bytes
whatever the number of workers, and an interrupted run resumes by skipping finished shards
(each is written to a temporary name and renamed when complete).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
import zipfile
from pathlib import Path

import numpy as np

from bodyshape.errors import BodyShapeError
from training.config import POSES, DataConfig, PoseRanges, data_config_to_json, refuse_changed_config
from training.pool import run_jobs

FORMAT_VERSION = 1


def shard_name(i: int) -> str:
    return f"shard_{i:05d}.npz"


def _shard_rng(seed: int, shard: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, shard]))


def _camera(cfg: DataConfig, view: str, rng: np.random.Generator, body_height: float):
    from bodyshape.render import Camera

    c = cfg.camera
    yaw = rng.normal(0, c.yaw_std_deg[view])
    roll = rng.normal(0, c.roll_std_deg)
    if rng.random() < c.p_orthographic:
        return Camera(yaw_deg=yaw, roll_deg=roll)
    d = rng.uniform(*c.distance_m)
    h = rng.uniform(*c.height_m)
    aim = math.degrees(math.atan2(h - 0.5 * body_height, d))
    return Camera(distance=d, height=h, pitch_deg=aim + rng.normal(0, c.pitch_std_deg), yaw_deg=yaw, roll_deg=roll)


def wide_pose(ranges: PoseRanges, rng: np.random.Generator, n: int) -> tuple[dict, np.ndarray]:
    """Per-body pose offsets ``{view: PoseOffsets}`` and whole-body yaw (n,) degrees from ``ranges``.

    Stance, lean and yaw are one per person (both photos); arms are drawn per photo. A fraction
    ``ranges.p_capture`` of the bodies get no offset at all (the plain jittered capture pose).
    """
    from bodyshape.body_model import PoseOffsets

    def draw(lo_hi: tuple[float, float]) -> np.ndarray:
        return rng.uniform(lo_hi[0], lo_hi[1], n)

    spread, lean, yaw = draw(ranges.leg_spread), draw(ranges.torso_lean), draw(ranges.yaw_deg)
    abduction, swing = draw(ranges.arm_abduction), draw(ranges.arm_swing)
    elbow_front, elbow_side = draw(ranges.elbow), draw(ranges.elbow)
    moved = (rng.random(n) >= ranges.p_capture).astype(np.float64)  # 0: capture pose
    shared = dict(leg_spread=spread * moved, torso_lean=lean * moved)
    offsets = {
        "front": PoseOffsets(arm_abduction=abduction * moved, elbow=elbow_front * moved, **shared),
        "side": PoseOffsets(arm_swing=swing * moved, elbow=elbow_side * moved, **shared),
    }
    return offsets, yaw * moved


def render_batch(
    model,
    shapes: np.ndarray,
    cfg: DataConfig,
    rng: np.random.Generator,
    noise=None,
    offsets: dict | None = None,
    rest_offsets: np.ndarray | None = None,
    extra_yaw_deg: np.ndarray | None = None,
    clothed: list[Clothes | None] | None = None,
):
    """Shapes (B, S) -> front (B, H, W) u8, side (B, H, W) u8, rest vertices (B, V, 3).

    The training data uses the defaults. The evaluation splits (:mod:`training.splits`) leave
    the training distribution with ``offsets`` (view -> :class:`~bodyshape.body_model.PoseOffsets`
    added to the jittered capture pose), ``rest_offsets`` (B, V, 3) (an off-model body surface)
    and ``extra_yaw_deg`` (B,) (the body turned further than the camera jitter turns it). The
    bodies with ``clothed`` (B entries; None: bare) are dressed (:func:`training.splits.dress`)
    before the mask noise, from generators of their own: the bare bodies are drawn as without it.
    """
    from bodyshape.augment import apply_mask_noise
    from bodyshape.body_model import capture_pose
    from bodyshape.render import render_silhouette
    from bodyshape.silhouette import normalize_silhouette

    noise = cfg.noise if noise is None else noise
    b = len(shapes)
    views = {}
    rest = None
    for view in ("front", "side"):
        pose = capture_pose(view, b, rng, cfg.pose_jitter, (offsets or {}).get(view))
        out = model.forward(shapes, pose, rest_offsets)
        rest = out.rest_vertices
        sils = []
        for k in range(b):
            v = out.vertices[k]
            body_h = float(v[:, 2].max() - v[:, 2].min())
            camera = _camera(cfg, view, rng, body_h)
            if extra_yaw_deg is not None:
                camera = dataclasses.replace(camera, yaw_deg=camera.yaw_deg + float(extra_yaw_deg[k]))
            mask = render_silhouette(v, out.faces, view, camera, cfg.render_height_px)
            if clothed is not None and clothed[k] is not None:
                from training.splits import dress

                c = clothed[k]
                mask = dress(mask, view, np.random.default_rng([c.seed, ("front", "side").index(view)]), c.rows)
            mask = apply_mask_noise(mask, view, rng, noise)
            if rng.random() < cfg.p_flip:
                mask = mask[:, ::-1]
            sils.append(normalize_silhouette(mask))
        views[view] = np.stack(sils)
    return views["front"], views["side"], rest


def make_shard(cfg: DataConfig, shard: int, out_dir: Path, model=None, measurer=None) -> Path:
    """Generate and atomically write shard ``shard``."""
    from bodyshape.body_model import get_body_model
    from bodyshape.measurements import get_measurer

    model = model or get_body_model()
    measurer = measurer or get_measurer()
    start = shard * cfg.shard_size
    n = min(cfg.shard_size, cfg.n - start)
    rng = _shard_rng(cfg.seed, shard)
    shapes = model.sample_shapes(n, seed=int(rng.integers(2**31)))
    fronts, sides, meas, heights = [], [], [], []
    deformed, dressed = [], []
    for c0 in range(0, n, 50):  # chunks bound the memory of a batched Anny forward
        chunk = shapes[c0 : c0 + 50]
        offsets, yaw = wide_pose(cfg.pose_ranges, rng, len(chunk)) if cfg.pose_ranges else (None, None)
        deltas, flags = rest_deformations(model, chunk, cfg.seed, cfg.off_model, np.arange(start + c0, start + c0 + len(chunk)))
        clothed = clothes(cfg.seed, cfg.dressed, np.arange(start + c0, start + c0 + len(chunk)))
        f, s, rest = render_batch(model, chunk, cfg, rng, offsets=offsets, rest_offsets=deltas, extra_yaw_deg=yaw,
                                  clothed=clothed)  # fmt: skip
        m = measurer.batch(rest)
        fronts.append(f)
        sides.append(s)
        meas.append(m)
        heights.append(m[:, 0])
        deformed.append(flags)
        dressed.append([c is not None for c in clothed])
    path = out_dir / shard_name(shard)
    tmp = out_dir / (shard_name(shard) + ".tmp")
    write_npz(
        tmp,
        dict(
            front=stored_silhouettes(np.concatenate(fronts), cfg.silhouettes),
            side=stored_silhouettes(np.concatenate(sides), cfg.silhouettes),
            shape=shapes.astype(np.float32),
            height=np.concatenate(heights).astype(np.float32),
            measurements=np.concatenate(meas).astype(np.float32),
            index=np.arange(start, start + n, dtype=np.int64),
            **({"off_model": np.concatenate(deformed)} if cfg.off_model else {}),
            **({"dressed": np.concatenate(dressed).astype(bool)} if cfg.dressed else {}),
        ),
    )
    os.replace(tmp, path)
    return path


def rest_deformations(model, shapes: np.ndarray, seed: int, share: float,
                      index: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:  # fmt: skip
    """The off-model bodies among rows ``index`` of a dataset of ``seed`` (:attr:`DataConfig.off_model`):
    -> displacements (B, V, 3) of their rest surfaces, metres (zero for the others; None when
    none is deformed), and which rows are deformed (B,) bool.

    Each row draws from its own seed (dataset seed, row index), apart from the generator of
    bodies, poses and noise: the same dataset with ``share`` 0 shows the same bodies, poses and
    noise without the bumps, and the truth can be recomputed from the shapes alone.
    """
    flags = off_model_rows(seed, share, index)
    if not flags.any():
        return None, flags
    from training.splits import smooth_deformation

    rest = model.forward(shapes).rest_vertices
    out = np.zeros_like(rest)
    for k in np.flatnonzero(flags):
        rng = _row_rng(seed, index[k])
        rng.random()  # the draw that chose the row
        out[k] = smooth_deformation(model, rest[k], rng, random_sites=True)
    return out, flags


#: Where the cloth of a dressed training body begins and ends (:func:`clothes`), shares of its
#: height from the top, drawn per body: a neckline to a hem, around the dressed splits' own
#: (0.19, 0.60), so that the correction does not learn one garment's hem.
CLOTHED_TOP = (0.16, 0.22)
CLOTHED_BOTTOM = (0.52, 0.70)


@dataclasses.dataclass(frozen=True)
class Clothes:
    """What a dressed training body wears (:func:`clothes`): the rows its cloth covers, shares of
    its height from the top, and the seed of its margins and hair (:func:`training.splits.dress`)."""

    rows: tuple[float, float]
    seed: int


def clothes(seed: int, share: float, index: np.ndarray) -> list[Clothes | None]:
    """The dressed bodies among rows ``index`` of a dataset of ``seed`` (:attr:`DataConfig.dressed`),
    None for a bare one. Each row's own seed decides, apart from the off-model draw and from the
    generator of bodies, poses and noise."""
    if share <= 0:
        return [None] * len(index)
    out: list[Clothes | None] = []
    for i in index:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 17, int(i)]))
        dressed = rng.random() < share
        rows = (float(rng.uniform(*CLOTHED_TOP)), float(rng.uniform(*CLOTHED_BOTTOM)))
        out.append(Clothes(rows, int(rng.integers(2**31))) if dressed else None)
    return out


def _row_rng(seed: int, row: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, 13, int(row)]))


def off_model_rows(seed: int, share: float, index: np.ndarray) -> np.ndarray:
    """Which rows ``index`` of a dataset of ``seed`` are off-model bodies, (B,) bool
    (:func:`rest_deformations`; each row's own seed decides)."""
    if share <= 0:
        return np.zeros(len(index), bool)
    return np.array([_row_rng(seed, i).random() < share for i in index], bool)


#: What a shard can store of each canvas (:attr:`training.config.DataConfig.silhouettes`).
SILHOUETTE_STORES = ("bits", "coverage")


def check_silhouette_store(silhouettes: str) -> None:
    if silhouettes not in SILHOUETTE_STORES:
        raise BodyShapeError(f"--silhouettes must be one of {', '.join(SILHOUETTE_STORES)}, got {silhouettes!r}")


def stored_silhouettes(canvases: np.ndarray, silhouettes: str) -> np.ndarray:
    """Coverage canvases (N, H, W) uint8 -> what a shard stores (:attr:`DataConfig.silhouettes`)."""
    from bodyshape.silhouette import body_pixels

    check_silhouette_store(silhouettes)
    if silhouettes == "coverage":
        return np.ascontiguousarray(canvases, dtype=np.uint8)
    return np.packbits(body_pixels(canvases), axis=-1)


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like ``np.savez_compressed`` but byte-reproducible (fixed zip timestamps)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(arr), allow_pickle=False)


def _shard_ok(path: Path) -> bool:
    try:
        with np.load(path) as z:
            return "measurements" in z.files and len(z["index"]) > 0
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return False


_WORKER: dict = {}


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)
    from bodyshape.body_model import get_body_model
    from bodyshape.measurements import get_measurer

    _WORKER["model"] = get_body_model()
    _WORKER["measurer"] = get_measurer()
    _WORKER["measurer"].joint_regressor  # noqa: B018  (build once per worker)


def _worker_run(job: tuple[DataConfig, int, str]) -> int:
    cfg, shard, out = job
    make_shard(cfg, shard, Path(out), _WORKER["model"], _WORKER["measurer"])
    return shard


def _writable_output(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise BodyShapeError(f"cannot write to output directory {out}: {e.strerror or e}") from e


def _new_manifest(cfg: DataConfig, cfg_json: dict, n_shards: int) -> dict:
    from bodyshape.body_model import LOCAL_CHANGE_LABELS, SHAPE_LABELS, SHAPE_VERSION
    from bodyshape.measurements import MEASUREMENT_NAMES
    from bodyshape.silhouette import BODY_HEIGHT_PX, CANVAS_HW

    return {
        "format_version": FORMAT_VERSION,
        "config": cfg_json,
        "n": cfg.n,
        "shards": [shard_name(i) for i in range(n_shards)],
        "shape_version": SHAPE_VERSION,
        "shape_labels": list(SHAPE_LABELS),
        "local_change_labels": list(LOCAL_CHANGE_LABELS),
        "measurement_names": list(MEASUREMENT_NAMES),
        "canvas_hw": list(CANVAS_HW),
        "body_height_px": BODY_HEIGHT_PX,
        "complete": False,
    }


def _extendable(stored: dict, requested: dict) -> dict:
    """``stored`` with its ``n`` replaced by the requested one when that only adds whole shards.

    Shard ``i`` does not depend on ``n`` (only the last shard's length does), so a dataset whose
    ``n`` is a multiple of the shard size can grow: its shards stay, new ones follow. Anything
    else (a smaller ``n``, a partial last shard, another setting) is left for the caller to refuse.
    """
    n0, n1, size = stored.get("n"), requested.get("n"), stored.get("shard_size")
    if isinstance(n0, int) and isinstance(n1, int) and size == requested.get("shard_size") and n1 > n0 and n0 % size == 0:
        return {**stored, "n": n1}
    return stored


def generate(cfg: DataConfig, out_dir: str | Path, workers: int | None = None, progress: bool = True) -> dict:
    """Generate (or finish generating) a dataset. Returns the manifest."""
    from tqdm import tqdm

    if cfg.n <= 0:
        raise BodyShapeError(f"--n must be a positive number of samples, got {cfg.n}")
    if cfg.shard_size <= 0:
        raise BodyShapeError(f"--shard-size must be positive, got {cfg.shard_size}")
    check_silhouette_store(cfg.silhouettes)
    out = Path(out_dir)
    _writable_output(out)
    manifest_path = out / "manifest.json"
    cfg_json = data_config_to_json(cfg)
    if manifest_path.exists():
        stored = json.loads(manifest_path.read_text()).get("config") or {}
        refuse_changed_config(_extendable(stored, cfg_json), cfg_json, f"the dataset in {out} was made",
                              "Use another --out, or the same arguments to resume (a larger --n extends it).")
    n_shards = -(-cfg.n // cfg.shard_size)
    todo = [i for i in range(n_shards) if not _shard_ok(out / shard_name(i))]
    for stale in out.glob("*.tmp"):
        stale.unlink()
    manifest = _new_manifest(cfg, cfg_json, n_shards)
    manifest_path.write_text(json.dumps(manifest, indent=1))
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    t0 = time.time()
    bar = tqdm(total=n_shards, initial=n_shards - len(todo), unit="shard", disable=not progress, desc="generate")
    run_jobs(_worker_run, [(cfg, i, str(out)) for i in todo], workers, _worker_init, bar=bar)
    bar.close()
    elapsed = time.time() - t0
    done = sum(min(cfg.shard_size, cfg.n - i * cfg.shard_size) for i in todo)
    manifest["complete"] = True
    manifest["last_run"] = {"samples": done, "seconds": round(elapsed, 1), "workers": workers,
                            "pairs_per_second": round(done / elapsed, 1) if elapsed > 0 and done else None}
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return manifest


#: Default output folder, under ``bodyshape.paths.DATA_DIR`` (``data/`` or ``$BODYSHAPE_DATA_DIR``).
DEFAULT_OUT = "seed{seed}-n{n}"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, default=DataConfig.n, help="number of silhouette pairs")
    p.add_argument("--seed", type=int, default=DataConfig.seed)
    default = DEFAULT_OUT.format(seed="<SEED>", n="<N>")
    p.add_argument("--out", type=Path, default=None,
                   help=f"output folder (default data/{default}; data/ is $BODYSHAPE_DATA_DIR when set)")
    p.add_argument("--shard-size", type=int, default=DataConfig.shard_size)
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--noise", choices=("default", "strong", "none"), default="default",
                   help="mask noise: as in training, harsher (robustness test set), or none")
    p.add_argument("--pose", choices=tuple(POSES), default="capture",
                   help="pose distribution: the capture pose with the training jitter (data/train, the shipped "
                        "model), or wide: also stance, arms, lean and yaw over the evaluation splits' ranges")
    p.add_argument("--silhouettes", choices=SILHOUETTE_STORES, default="bits",
                   help="store the 0/1 bodies bit-packed (training sets) or the uint8 coverage canvases the page "
                        "reads (test sets, the correction's set: 8x larger)")
    p.add_argument("--off-model", type=float, default=0.0, metavar="SHARE",
                   help="share of the bodies given smooth random bumps of up to 3 cm on the torso and thighs, "
                        "measured on the deformed mesh (bodies Anny cannot express: rows for the correction)")
    p.add_argument("--dressed", type=float, default=0.0, metavar="SHARE",
                   help="share of the bodies dressed as the dressed photo splits are (hair, 0.5-1.5 cm of cloth from "
                        "a neckline to a hem drawn per body), measured bare: rows for the fitted-clothing correction")


def run(args: argparse.Namespace) -> int:
    from bodyshape import paths
    from bodyshape.augment import NO_NOISE, MaskNoise

    noise = {"default": MaskNoise(), "strong": MaskNoise().stronger(), "none": NO_NOISE}[args.noise]
    if not 0.0 <= args.off_model <= 1.0:
        raise BodyShapeError(f"--off-model is a share of the bodies, between 0 and 1; got {args.off_model}")
    if not 0.0 <= args.dressed <= 1.0:
        raise BodyShapeError(f"--dressed is a share of the bodies, between 0 and 1; got {args.dressed}")
    cfg = DataConfig(n=args.n, seed=args.seed, shard_size=args.shard_size, noise=noise, pose_ranges=POSES[args.pose],
                     silhouettes=args.silhouettes, off_model=args.off_model, dressed=args.dressed)
    out = args.out or paths.DATA_DIR / DEFAULT_OUT.format(seed=args.seed, n=args.n)
    m = generate(cfg, out, workers=args.workers)
    r = m["last_run"]
    print(f"dataset in {out}: {m['n']} pairs; this run {r['samples']} pairs in {r['seconds']} s "
          f"({r['pairs_per_second']} pairs/s, {r['workers']} workers)")
    return 0
