"""Mask augmentations that make rendered silhouettes look like real photo masks.

Applied to a rendered mask (uint8 0/255, body about 224 px tall, side view facing
image-right) *before* :func:`bodyshape.silhouette.normalize_silhouette`. They imitate what
a segmentation network (rembg) and real people add to a clean body outline: biased or
ragged edges, holes, spill blobs, hair (volume, bun, ponytail), shoes, a floor shadow.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class MaskNoise:
    """Probabilities and strengths (pixels at a ~224 px body height)."""

    p_morph: float = 0.6
    morph_max_px: int = 3  # erosion/dilation radius: tight clothing, segmentation bias
    p_rough: float = 0.4
    rough_amp: float = 0.12  # ragged edges
    p_holes: float = 0.25
    p_blobs: float = 0.3
    blob_max_px: int = 8
    p_hair: float = 0.5
    p_shoes: float = 0.5
    p_shadow: float = 0.1

    def stronger(self) -> MaskNoise:
        """Harsher noise than training used, to test robustness."""
        return MaskNoise(
            p_morph=0.9, morph_max_px=5, p_rough=0.9, rough_amp=0.25, p_holes=0.6,
            p_blobs=0.7, blob_max_px=14, p_hair=0.8, p_shoes=0.8, p_shadow=0.3,
        )


NO_NOISE = MaskNoise(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)


def _ellipse(img: np.ndarray, center: tuple[float, float], axes: tuple[float, float], angle: float, value: int) -> None:
    c = (int(round(center[0])), int(round(center[1])))
    a = (max(1, int(round(axes[0]))), max(1, int(round(axes[1]))))
    cv2.ellipse(img, c, a, angle, 0, 360, value, -1)


def _pad(mask: np.ndarray, px: int) -> np.ndarray:
    return cv2.copyMakeBorder(mask, px, px, px, px, cv2.BORDER_CONSTANT, value=0)


def add_hair(mask: np.ndarray, view: str, rng: np.random.Generator) -> None:
    """Hair volume on top, or a bun / ponytail at the back of the head (in place)."""
    rows = np.flatnonzero(mask.any(1))
    top, h = rows[0], rows[-1] - rows[0]
    head = mask[top : top + int(0.07 * h)]
    cols = np.flatnonzero(head.any(0))
    x0, x1 = cols[0], cols[-1]
    cx, hw = 0.5 * (x0 + x1), 0.5 * (x1 - x0)
    kind = rng.choice(["volume", "bun", "ponytail"] if view == "side" else ["volume", "bun", "long"])
    if kind == "volume":
        _ellipse(mask, (cx + rng.normal(0, 0.1 * hw), top + 0.035 * h), (hw * rng.uniform(1.05, 1.35), 0.045 * h * rng.uniform(0.9, 1.3)), 0, 255)
    elif kind == "bun":
        back = x0 + 0.1 * hw if view == "side" else cx  # side view faces right: back is left
        y = top + (0.03 if view == "side" else -0.005) * h
        r = hw * rng.uniform(0.3, 0.55)
        _ellipse(mask, (back - (0.3 * r if view == "side" else 0), y + r * 0.2), (r, r * 0.9), 0, 255)
    elif kind == "ponytail":
        length = h * rng.uniform(0.05, 0.15)
        _ellipse(mask, (x0 - 0.1 * hw, top + 0.06 * h + 0.5 * length), (hw * rng.uniform(0.2, 0.35), 0.5 * length), rng.uniform(-15, 5), 255)
    else:  # long hair down over the shoulders (front view)
        length = h * rng.uniform(0.08, 0.18)
        for side in (-1, 1):
            _ellipse(mask, (cx + side * hw * 0.9, top + 0.07 * h + 0.5 * length), (hw * 0.35, 0.5 * length), 0, 255)


def add_shoes(mask: np.ndarray, view: str, rng: np.random.Generator) -> None:
    """Shoe-shaped feet: a sole under each foot, longer (side) or wider (front)."""
    rows = np.flatnonzero(mask.any(1))
    bottom, h = rows[-1], rows[-1] - rows[0]
    band = mask[bottom - int(0.03 * h) : bottom + 1]
    n, _, stats, _ = cv2.connectedComponentsWithStats((band > 0).astype(np.uint8))
    sole = rng.uniform(0.004, 0.02) * h
    for i in range(1, n):
        x, _, w, _, _ = stats[i]
        if w < 2:
            continue
        cx = x + 0.5 * w
        if view == "side":
            length, cx = 0.5 * w * rng.uniform(1.0, 1.25), cx + rng.uniform(-0.05, 0.1) * w
        else:
            length = 0.5 * w * rng.uniform(1.05, 1.3)
        _ellipse(mask, (cx, bottom - 0.012 * h + 0.5 * sole), (length, 0.012 * h + 0.5 * sole), 0, 255)


def apply_mask_noise(mask: np.ndarray, view: str, rng: np.random.Generator, noise: MaskNoise = MaskNoise()) -> np.ndarray:
    """A noisy copy of ``mask`` (uint8 0/255)."""
    pad = 24  # room for hair and shoes beyond the body's box
    m = _pad(mask, pad)
    if rng.random() < noise.p_hair:
        add_hair(m, view, rng)
    if rng.random() < noise.p_shoes:
        add_shoes(m, view, rng)
    if rng.random() < noise.p_shadow:
        rows = np.flatnonzero(m.any(1))
        cols = np.flatnonzero(m[rows[-1] - 2 : rows[-1] + 1].any(0))
        _ellipse(m, (0.5 * (cols[0] + cols[-1]) + rng.normal(0, 5), rows[-1]), ((cols[-1] - cols[0]) * rng.uniform(0.6, 1.0), rng.uniform(2, 5)), 0, 255)
    if rng.random() < noise.p_morph and noise.morph_max_px > 0:
        r = int(rng.integers(1, noise.morph_max_px + 1))
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        m = cv2.dilate(m, k) if rng.random() < 0.6 else cv2.erode(m, k[1:-1, 1:-1] if r > 1 else k)
    if rng.random() < noise.p_blobs:
        edge = np.argwhere(cv2.morphologyEx(m, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0)
        for _ in range(int(rng.integers(1, 4))):
            y, x = edge[rng.integers(len(edge))]
            _ellipse(m, (x, y), tuple(rng.uniform(2, noise.blob_max_px, 2)), rng.uniform(0, 180), 255)
    if rng.random() < noise.p_holes:
        inside = np.argwhere(cv2.erode(m, np.ones((9, 9), np.uint8)) > 0)
        for _ in range(int(rng.integers(1, 4))):
            if len(inside):
                y, x = inside[rng.integers(len(inside))]
                _ellipse(m, (x, y), tuple(rng.uniform(1, 4, 2)), rng.uniform(0, 180), 0)
    if rng.random() < noise.p_rough and noise.rough_amp > 0:
        field = cv2.GaussianBlur(rng.normal(0, 1, m.shape).astype(np.float32), (0, 0), 2.0)
        field *= noise.rough_amp / (field.std() + 1e-6)
        soft = cv2.GaussianBlur(m.astype(np.float32) / 255, (0, 0), 1.5)
        band = (soft > 0.02) & (soft < 0.98)  # only the edge moves
        m = (np.where(band, soft + field, soft) > 0.5).astype(np.uint8) * 255
    return m
