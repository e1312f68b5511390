"""Configuration of the data and training stages: one dataclass each, defaults that work."""

from __future__ import annotations

from dataclasses import dataclass, field

from bodyshape.augment import MaskNoise
from bodyshape.body_model import PoseJitter


@dataclass(frozen=True)
class CameraJitter:
    p_orthographic: float = 0.2
    distance_m: tuple[float, float] = (2.0, 4.0)  # phone to person
    height_m: tuple[float, float] = (0.9, 1.6)  # phone above the floor
    pitch_std_deg: float = 3.0  # around aiming at the body's middle
    yaw_std_deg: dict[str, float] = field(default_factory=lambda: {"front": 4.0, "side": 6.0})
    roll_std_deg: float = 1.5


@dataclass(frozen=True)
class DataConfig:
    n: int = 2000
    seed: int = 0
    shard_size: int = 500
    render_height_px: int = 224  # render at ~2x the network's body height, then normalise
    pose_jitter: PoseJitter = PoseJitter()
    camera: CameraJitter = CameraJitter()
    noise: MaskNoise = MaskNoise()
    p_flip: float = 0.5  # mirror image: people turn left or right for the side photo
