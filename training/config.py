"""Configuration of data generation and training: one dataclass each, defaults that work.

Also the names shared by training, evaluation and shipping (the stages, their weight files,
where a run's folder is) and the one check that a resumed dataset or training stage is made
with the configuration it was started with.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from bodyshape.augment import MaskNoise
from bodyshape.body_model import PoseJitter
from bodyshape.errors import BodyShapeError


@dataclass(frozen=True)
class CameraJitter:
    p_orthographic: float = 0.2
    distance_m: tuple[float, float] = (2.0, 4.0)  # phone to person
    height_m: tuple[float, float] = (0.9, 1.6)  # phone above the floor
    pitch_std_deg: float = 3.0  # around aiming at the body's middle
    yaw_std_deg: dict[str, float] = field(default_factory=lambda: {"front": 4.0, "side": 6.0})
    roll_std_deg: float = 1.5


@dataclass(frozen=True)
class PoseRanges:
    """Uniform ranges (degrees) of deliberate pose changes, on top of the :class:`PoseJitter`.

    A Normal SD cannot say "feet together to wide" or "upright to 12 deg forward" without also
    making far tails, so the wide training distribution draws each body's offsets (signs as in
    :class:`~bodyshape.body_model.PoseOffsets`) uniformly from these ranges. One person keeps
    the same stance, lean and yaw in both photos; the arms are posed per photo (abduction shows
    in the front view, swing in the side view). A fraction ``p_capture`` of the bodies keeps the
    plain capture pose (jitter only), so that the common case stays well covered.
    """

    leg_spread: tuple[float, float] = (-12.0, 15.0)  # thighs overlapping .. wide (per leg)
    torso_lean: tuple[float, float] = (-5.0, 12.0)  # real people lean forward 9-11 deg in profile
    arm_abduction: tuple[float, float] = (-25.0, 25.0)  # front view; rest 45 deg from the body
    arm_swing: tuple[float, float] = (-15.0, 15.0)  # side view
    elbow: tuple[float, float] = (0.0, 20.0)  # each view
    yaw_deg: tuple[float, float] = (-10.0, 10.0)  # whole body, on top of the camera's yaw jitter
    p_capture: float = 0.3


#: The training pose distributions by name (``bodyshape generate --pose``): ``capture`` is the
#: capture pose with :class:`PoseJitter` only (``data/train``, the shipped model); ``wide``
#: adds :class:`PoseRanges` (the stance, arm and posture ranges of the evaluation splits).
POSES: dict[str, PoseRanges | None] = {"capture": None, "wide": PoseRanges()}


@dataclass(frozen=True)
class DataConfig:
    n: int = 2000
    seed: int = 0
    shard_size: int = 500
    render_height_px: int = 224  # render at ~2x the network's body height, then normalise
    pose_jitter: PoseJitter = PoseJitter()
    pose_ranges: PoseRanges | None = None  # None: the capture pose (+ jitter) only
    camera: CameraJitter = CameraJitter()
    noise: MaskNoise = MaskNoise()
    p_flip: float = 0.5  # mirror image: people turn left or right for the side photo
    #: What a shard stores of each canvas (:mod:`training.generate`): ``bits``, the 0/1 body the
    #: network trains on, bit-packed (8x smaller: the training sets); or ``coverage``, the whole
    #: uint8 coverage canvas the page reads (the sets that judge or calibrate the shipped reader:
    #: test sets, the correction's set).
    silhouettes: str = "bits"
    #: Share of the bodies whose rest surface gets smooth random bumps (up to 3 cm, anywhere on
    #: the torso and thighs: :func:`training.generate.rest_deformations`), their measurements
    #: taken on the deformed mesh: bodies no shape vector expresses, for the correction's rows.
    off_model: float = 0.0
    #: Share of the bodies dressed (:func:`training.splits.dress`, with the clothed rows drawn per
    #: body around the dressed splits' :data:`training.splits.CLOTHED_ROWS`: :func:`training.generate.clothes`),
    #: their measurements still the body's: rows for the correction of *fitted* clothing.
    dressed: float = 0.0


# ----------------------------------------------------------------------------- training stages
FRONT, SIDE, FUSED_STAGED, FUSED_SCRATCH = "front", "side", "fused_staged", "fused_scratch"
#: The training stages, in the order they run (fused_staged starts from front's and side's encoders).
STAGES = (FRONT, SIDE, FUSED_STAGED, FUSED_SCRATCH)
#: The views each stage's network reads.
STAGE_VIEWS = {FRONT: ("front",), SIDE: ("side",), FUSED_STAGED: ("front", "side"), FUSED_SCRATCH: ("front", "side")}
#: Stage -> its weights file (without ``.safetensors``) in a run's ``weights/`` and when shipped.
WEIGHT_NAMES = {FRONT: "front", SIDE: "side", FUSED_STAGED: "fused", FUSED_SCRATCH: "fused_scratch"}
#: The weights file the Triton repository is exported from (``bodyshape export``'s default).
SERVED_WEIGHTS = WEIGHT_NAMES[FUSED_STAGED]


@dataclass
class TrainConfig:
    """One training run. Everything it writes goes to its run folder, :func:`run_dir` of ``out``."""

    data: str = "data/train"
    out: str = "main"  # run folder: a name (a folder of bodyshape.paths.RUNS_DIR) or a path with a '/'
    val_size: int = 1000
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    # samples seen per stage (single-view stages count single-view samples)
    samples: dict[str, int] = field(default_factory=lambda: {FRONT: 96000, SIDE: 96000, FUSED_STAGED: 32000})
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
    # coverage datasets: read each sample's canvases at a random sub-pixel phase (one of the looks
    # the served reader averages, bodyshape.nets.subpixel_look) instead of always phase 0
    random_phase: bool = False
    init: str | None = None  # fused_staged: start from this trained fused model file (fine-tuning)

    def stage_samples(self, stage: str) -> int:
        return stage_samples(self.samples, stage)


def stage_samples(samples: dict[str, int], stage: str) -> int:
    """Samples a stage sees; the scratch control gets the staged pipeline's total compute."""
    if stage == FUSED_SCRATCH:  # one fused step costs about two single-view steps
        return int(samples[FRONT] / 2 + samples[SIDE] / 2 + samples[FUSED_STAGED])
    return int(samples[stage])


def run_dir(run: str | Path) -> Path:
    """A run's folder: a bare name is a folder of ``bodyshape.paths.RUNS_DIR``; a path (with a '/') is itself."""
    from bodyshape import paths  # looked up at call time: tests point RUNS_DIR elsewhere

    text = str(run)
    if not text or text in (".", ".."):
        raise BodyShapeError(f"{text!r} is not a run name; give a name (a folder of {paths.RUNS_DIR}) or a path")
    return Path(run) if "/" in text else paths.RUNS_DIR / text


def run_weights_dir(run: str | Path) -> Path:
    """Where a run writes its final ``.safetensors`` (``bodyshape ship`` copies them from there)."""
    return run_dir(run) / "weights"


# ----------------------------------------------------------------------------- config checks
#: TrainConfig keys that do not change what a stage learns: a resume may change them.
RUN_ONLY_KEYS = ("out", "stages", "threads")
#: TrainConfig keys only the fused_staged stage reads.
FUSED_STAGED_KEYS = ("frozen_fraction", "finetune_lr_scale", "init")
#: TrainConfig keys added after runs were stored, with the value that is what those runs did:
#: a stage's config.json without one of them compares as having that value.
ADDED_KEYS = {"random_phase": False}


def config_to_json(cfg: object) -> dict:
    """A config dataclass as plain JSON values (tuples become lists), as stored on disk."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def data_config_to_json(cfg: DataConfig) -> dict:
    """A :class:`DataConfig` as stored in a dataset's manifest. Without ``pose_ranges`` it is
    left out, and so are ``silhouettes`` when it is ``bits`` and ``off_model`` and ``dressed`` when 0, so
    datasets made before they existed keep their manifest and resume."""
    out = config_to_json(cfg)
    if out.get("pose_ranges") is None:
        out.pop("pose_ranges", None)
    if out.get("silhouettes") == "bits":
        out.pop("silhouettes")
    if not out.get("off_model"):
        out.pop("off_model", None)
    if not out.get("dressed"):
        out.pop("dressed", None)
    return out


def stage_config(config: dict, stage: str) -> dict:
    """What a stage's result depends on, from a :class:`TrainConfig` as JSON: what a resume compares."""
    out = {**ADDED_KEYS, **{k: v for k, v in config.items() if k not in RUN_ONLY_KEYS}}
    if stage != FUSED_STAGED:
        out = {k: v for k, v in out.items() if k not in FUSED_STAGED_KEYS}
    seconds = config["seconds"].get(stage)
    out["seconds"] = seconds
    out["samples"] = None if seconds else stage_samples(config["samples"], stage)
    return out


def _flatten(d: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            flat.update(_flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def config_differences(stored: dict, requested: dict) -> list[str]:
    """``"key (was A, now B)"`` for every (dotted, nested) key whose value differs."""
    a, b = _flatten(stored), _flatten(requested)
    missing = "<unset>"
    return [f"{k} (was {a.get(k, missing)!r}, now {b.get(k, missing)!r})"
            for k in sorted(a.keys() | b.keys()) if a.get(k, missing) != b.get(k, missing)]


def refuse_changed_config(stored: dict, requested: dict, what: str, remedy: str) -> None:
    """Raise unless ``requested`` equals ``stored``: resuming with other settings would mix two runs.

    ``what`` names the thing on disk ("the dataset in data/x was made"), ``remedy`` what to do.
    """
    diff = config_differences(stored, requested)
    if diff:
        raise BodyShapeError(f"{what} with a different configuration: {'; '.join(diff)}. {remedy}")
