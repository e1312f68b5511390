"""Silhouette normalisation: the ONE function that turns any body mask into network input.

Rendered training masks and masks cut out of user photos both go through
:func:`normalize_silhouette`, so the network sees the same world at run time as in training.
"""

from __future__ import annotations

import cv2
import numpy as np

from bodyshape.errors import BodyShapeError

#: Network input canvas (height, width). A 4:3 portrait canvas: a standing body is tall, and
#: a square would spend most pixels on background.
CANVAS_HW: tuple[int, int] = (128, 96)
#: Height of the body's bounding box on the canvas, in pixels (the rest is margin).
BODY_HEIGHT_PX: int = 112


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the non-zero pixels, bottom/right exclusive."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise BodyShapeError("the silhouette is empty: no body pixels found")
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def normalize_silhouette(
    mask: np.ndarray,
    canvas_hw: tuple[int, int] = CANVAS_HW,
    body_height_px: int = BODY_HEIGHT_PX,
) -> np.ndarray:
    """Crop to the body, scale it to ``body_height_px`` tall, centre it on the canvas.

    ``mask``: (H, W) array, body where > 0 (bool, 0/1 or 0/255).
    Returns a (canvas_h, canvas_w) uint8 array of 0 and 255. If the body is too wide for the
    canvas at that height (arms spread wide), it is scaled down to fit the width instead.
    Idempotent: normalising a normalised silhouette returns it unchanged.
    """
    if mask.ndim != 2:
        raise BodyShapeError(f"a silhouette must be a 2-D mask, got shape {mask.shape}")
    ch, cw = canvas_hw
    if body_height_px > ch - 2:
        raise BodyShapeError("body_height_px must leave a margin on the canvas")
    binary = mask > (127 if mask.dtype == np.uint8 and mask.max() > 1 else 0)
    top, bottom, left, right = bounding_box(binary)
    crop = binary[top:bottom, left:right]
    h, w = crop.shape
    scale = min(body_height_px / h, (cw - 2) / w)
    th, tw = max(1, round(h * scale)), max(1, round(w * scale))
    if (th, tw) != (h, w):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        small = cv2.resize(crop.astype(np.float32), (tw, th), interpolation=interp) >= 0.5
        if not small.any():
            raise BodyShapeError("the silhouette vanished when scaled: it is too thin")
        # Thresholding can drop a thin first/last row or column; re-crop and stretch to the
        # exact target size so that the body height is exact (and the function idempotent).
        t2, b2, l2, r2 = bounding_box(small)
        small = small[t2:b2, l2:r2]
        if small.shape != (th, tw):
            small = cv2.resize(small.astype(np.uint8), (tw, th), interpolation=cv2.INTER_NEAREST) > 0
        crop = small
    out = np.zeros(canvas_hw, np.uint8)
    y0 = (ch - th) // 2
    x0 = (cw - tw) // 2
    out[y0 : y0 + th, x0 : x0 + tw] = crop.astype(np.uint8) * 255
    return out


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill background regions that do not touch the image border."""
    binary = (mask > 0).astype(np.uint8)
    padded = np.pad(binary, 1)
    flood = padded.copy()
    ff_mask = np.zeros((padded.shape[0] + 2, padded.shape[1] + 2), np.uint8)
    cv2.floodFill(flood, ff_mask, (0, 0), 1)
    holes = (flood == 0)[1:-1, 1:-1]
    return ((binary > 0) | holes).astype(np.uint8) * 255


def to_network_input(silhouettes: np.ndarray) -> np.ndarray:
    """uint8 0/255 (or bool) silhouettes (..., H, W) -> float32 in {0, 1}."""
    return (np.asarray(silhouettes) > 0).astype(np.float32)
