"""Synthetic "photos" of known bodies, for tests, examples and the capture guide.

A body of known shape is rendered in the capture pose (front and side) as a silhouette, then
painted as a person on a textured room background: shaded skin (a Lambertian "pillow" lit
from the upper left, with normals from the silhouette's distance transform), a coloured top
and shorts, dark hair, a wall with low-frequency texture and a few picture frames, a floor,
sensor noise and JPEG compression. That gives rembg real work to do while the true mask and
the true shape stay known.

    shape = get_body_model().sample_shapes(1, seed=3)[0]
    front, side = render_masks(shape)                 # (H, W) uint8 0/255 each
    photo = compose_photo(front, np.random.default_rng(0))   # (800, 600, 3) uint8 RGB
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Photo size (height, width): a phone photo in portrait, scaled down.
PHOTO_HW: tuple[int, int] = (800, 600)


@dataclass(frozen=True)
class Outfit:
    skin: tuple[int, int, int] = (224, 172, 140)
    top: tuple[int, int, int] = (40, 70, 140)
    shorts: tuple[int, int, int] = (35, 35, 40)
    hair: tuple[int, int, int] = (60, 40, 25)


OUTFITS = (
    Outfit(),
    Outfit(skin=(198, 134, 96), top=(150, 40, 40), shorts=(60, 60, 70), hair=(25, 20, 15)),
    Outfit(skin=(240, 200, 175), top=(50, 110, 60), shorts=(30, 40, 80), hair=(140, 100, 50)),
    Outfit(skin=(120, 80, 55), top=(200, 200, 210), shorts=(20, 20, 20), hair=(15, 12, 10)),
)


def render_masks(shape: np.ndarray, height_px: int = 560, camera=None) -> tuple[np.ndarray, np.ndarray]:
    """Front and side capture-pose silhouettes (uint8 0/255) of one shape vector (N_SHAPE,)."""
    from bodyshape.body_model import capture_pose, get_body_model
    from bodyshape.render import Camera, render_silhouette

    camera = camera or Camera(distance=2.6, height=1.2)
    bm = get_body_model()
    shape = np.asarray(shape, np.float32).reshape(1, -1)
    out = []
    for view in ("front", "side"):
        verts = bm.forward(shape, capture_pose(view, 1)).vertices[0]
        out.append(render_silhouette(verts, bm.faces, view, camera, height_px))
    return out[0], out[1]


def _smooth_noise(rng: np.random.Generator, hw: tuple[int, int], cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1], (H, W) float32."""
    small = rng.uniform(-1, 1, (cells, max(2, cells * hw[1] // hw[0]))).astype(np.float32)
    return cv2.resize(small, (hw[1], hw[0]), interpolation=cv2.INTER_CUBIC).clip(-1, 1)


def background(
    rng: np.random.Generator, hw: tuple[int, int] = PHOTO_HW, floor_frac: float = 0.12
) -> np.ndarray:
    """A plain room: textured wall with picture frames, a floor. (H, W, 3) float32 0..255."""
    h, w = hw
    wall = np.array(
        rng.choice([(205, 200, 190), (180, 190, 200), (215, 210, 195), (170, 175, 160)]), np.float32
    )
    img = np.empty((h, w, 3), np.float32)
    img[:] = wall
    img *= (1.0 + 0.08 * _smooth_noise(rng, hw, 6))[..., None]
    img += 10.0 * _smooth_noise(rng, hw, 40)[..., None]
    img *= np.linspace(1.05, 0.85, w, dtype=np.float32)[None, :, None]  # light from the left
    # Picture frames, high in the corners only: the capture guide asks for a plain wall behind
    # the person, and u2netp (like any saliency model) merges a bold object touching the body.
    for corner in rng.permutation(2)[: rng.integers(1, 3)]:
        fw, fh = int(rng.uniform(0.1, 0.18) * w), int(rng.uniform(0.08, 0.16) * h)
        x0 = (
            int(rng.uniform(0.01, 0.2 - fw / w) * w)
            if corner == 0
            else int(rng.uniform(0.8, 0.99 - fw / w) * w)
        )
        y0 = int(rng.uniform(0.02, 0.1) * h)
        colour = wall * rng.uniform(0.5, 1.1, 3)
        cv2.rectangle(img, (x0, y0), (x0 + fw, y0 + fh), colour.tolist(), -1)
        cv2.rectangle(img, (x0, y0), (x0 + fw, y0 + fh), (rng.uniform(40, 90),) * 3, 3)
    fy = int(h * (1 - floor_frac))
    floor = np.array(rng.choice([(120, 90, 60), (150, 140, 130), (90, 80, 75)]), np.float32)
    img[fy:] = floor * (1.0 + 0.15 * _smooth_noise(rng, (h - fy, w), 20))[..., None]
    for x in range(int(rng.integers(0, 60)), w, int(rng.integers(60, 140))):  # floor boards
        cv2.line(img, (x, fy), (x + (x - w // 2) // 3, h), (floor * 0.7).tolist(), 2)
    img[fy - 6 : fy] = floor * 0.6  # skirting board
    return img


def paint_person(mask: np.ndarray, rng: np.random.Generator, outfit: Outfit | None = None) -> np.ndarray:
    """Shaded colours of a person inside ``mask`` ((H, W) 0/255): (H, W, 3) float32."""
    outfit = outfit or OUTFITS[int(rng.integers(len(OUTFITS)))]
    body = mask > 0
    dist = cv2.distanceTransform(body.astype(np.uint8), cv2.DIST_L2, 5)
    bump = np.sqrt(dist)  # a rounded "pillow" surface
    gy, gx = np.gradient(cv2.GaussianBlur(bump, (0, 0), 2))
    normal = np.dstack([-gx, -gy, np.full_like(gx, 0.35)])
    normal /= np.linalg.norm(normal, axis=2, keepdims=True)
    light = np.array([-0.45, -0.5, 0.74], np.float32)
    shade = 0.35 + 0.75 * np.clip(normal @ light, 0, 1)

    rows = np.flatnonzero(body.any(1))
    top, bottom = rows[0], rows[-1] + 1
    hgt = bottom - top
    y = (np.arange(mask.shape[0]) - top) / max(hgt, 1)  # 0 at the top of the head
    colour = np.empty(mask.shape + (3,), np.float32)
    colour[:] = outfit.skin
    cols = np.flatnonzero(body.any(0))
    cx = (cols[0] + cols[-1]) / 2
    # Clothing only on the torso column (arms stay bare in the front view).
    torso = np.abs(np.arange(mask.shape[1]) - cx)[None, :] < 0.11 * hgt
    band = (y[:, None] > 0.19) & (y[:, None] < 0.47) & torso
    colour[band] = outfit.top
    hips = np.abs(np.arange(mask.shape[1]) - cx)[None, :] < 0.13 * hgt
    colour[(y[:, None] >= 0.47) & (y[:, None] < 0.60) & hips] = outfit.shorts
    colour[y < 0.055] = outfit.hair
    texture = 1.0 + 0.05 * _smooth_noise(rng, mask.shape, 60)
    return colour * (shade * texture)[..., None]


def compose_photo(
    masks: np.ndarray | list[np.ndarray],
    rng: np.random.Generator,
    hw: tuple[int, int] = PHOTO_HW,
    body_frac: float = 0.82,
    centers: list[float] | None = None,
    shift_y: float = 0.0,
    jpeg_quality: int = 90,
) -> np.ndarray:
    """Persons (one mask, or a list: several people) on a room background: (H, W, 3) uint8 RGB.

    ``body_frac``: body height / photo height. ``centers``: horizontal centre of each person
    as a fraction of the width. ``shift_y``: move people down by this fraction of the height
    (positive values cut the feet off at the bottom edge).
    """
    masks = [masks] if isinstance(masks, np.ndarray) else list(masks)
    h, w = hw
    centers = centers or [0.5 + (i - (len(masks) - 1) / 2) * 0.45 for i in range(len(masks))]
    img = background(rng, hw)
    floor_y = int(h * (1 - 0.04)) + int(shift_y * h)
    for mask, c in zip(masks, centers, strict=True):
        rows = np.flatnonzero(mask.any(1))
        cols = np.flatnonzero(mask.any(0))
        crop = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        s = body_frac * h / crop.shape[0]
        crop = cv2.resize(
            crop, (max(1, round(crop.shape[1] * s)), round(crop.shape[0] * s)), interpolation=cv2.INTER_LINEAR
        )
        ph, pw = crop.shape
        y0, x0 = floor_y - ph, int(c * w - pw / 2)
        canvas = np.zeros((h, w), np.uint8)
        # Paste with clipping at the frame edges.
        sy0, sx0 = max(0, -y0), max(0, -x0)
        dy0, dx0 = max(0, y0), max(0, x0)
        dy1, dx1 = min(h, y0 + ph), min(w, x0 + pw)
        canvas[dy0:dy1, dx0:dx1] = crop[sy0 : sy0 + dy1 - dy0, sx0 : sx0 + dx1 - dx0]
        # A soft contact shadow on the floor under the feet.
        shadow = np.zeros((h, w), np.float32)
        cv2.ellipse(shadow, (int(c * w), min(h - 1, floor_y)), (int(pw * 0.4), 10), 0, 0, 360, 1.0, -1)
        img *= (1 - 0.35 * cv2.GaussianBlur(shadow, (0, 0), 6))[..., None]
        person = paint_person(canvas, rng)
        alpha = cv2.GaussianBlur(canvas.astype(np.float32) / 255, (0, 0), 0.8)[..., None]
        img = img * (1 - alpha) + person * alpha
    img += rng.normal(0, 3.0, img.shape).astype(np.float32)  # sensor noise
    out = np.clip(img, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()


def photo_pair(shape: np.ndarray, seed: int, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """Front and side photos (RGB uint8) of one body, reproducible from ``seed``."""
    front, side = render_masks(shape)
    rng = np.random.default_rng(seed)
    return compose_photo(front, rng, **kwargs), compose_photo(side, rng, **kwargs)
