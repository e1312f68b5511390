"""Silhouette normalisation: the ONE function that turns any body mask into network input.

Rendered training masks and masks cut out of user photos both go through
:func:`normalize_silhouette`, so the network sees the same world at run time as in training.
Its output is a coverage canvas (sub-pixel edges); :func:`body_pixels` is its 0/1 body.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from bodyshape.errors import BodyShapeError

#: Network input canvas (height, width). A 4:3 portrait canvas: a standing body is tall, and
#: a square would spend most pixels on background.
CANVAS_HW: tuple[int, int] = (128, 96)
#: Height of the body's bounding box on the canvas, in pixels (the rest is margin).
BODY_HEIGHT_PX: int = 112
#: A canvas pixel is body when at least half of it is covered: coverage >= 128 of 255.
BODY_THRESHOLD: int = 128
#: The served model reads each canvas at this many horizontal sub-pixel phases, 1/8 px apart,
#: and averages the shapes (bodyshape.nets.subpixel_looks; docs/evaluation.md: 8 phases halve
#: the per-person scatter under camera roll and resolution changes, 4 phases did less).
SUBPIXEL_PHASES: int = 8


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the non-zero pixels, bottom/right exclusive."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise BodyShapeError("the silhouette is empty: no body pixels found")
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _coverage(mask: np.ndarray) -> np.ndarray:
    """Any mask -> float32 share of each pixel covered by the body, 0..1.

    uint8 and bool masks are read as :func:`as_canvases` reads them (coverage in 0..255; 0/1
    and bool masks binary), so a normalised silhouette keeps its sub-pixel edges; anything else
    is body where > 0."""
    m = np.asarray(mask)
    if m.dtype in (np.uint8, np.bool_):
        return as_canvases(m).astype(np.float32) / 255.0
    return (m > 0).astype(np.float32)


def normalize_silhouette(
    mask: np.ndarray,
    canvas_hw: tuple[int, int] = CANVAS_HW,
    body_height_px: int = BODY_HEIGHT_PX,
) -> np.ndarray:
    """Crop to the body, scale it to ``body_height_px`` tall, centre it on the canvas.

    ``mask``: (H, W) array, body where > 0 (bool, 0/1 or 0/255; a uint8 mask with soft values
    is read as coverage, see :func:`_coverage`).
    Returns a (canvas_h, canvas_w) uint8 **coverage** canvas: each pixel holds the share of it
    the body covers, 0..255 (area coverage of the mask's pixels, scaled by the same factor
    both ways, so the aspect is exact, not rounded to whole pixels). The edges keep
    sub-pixel detail that a 0/1 threshold would round away: a pixel of a 1.7 m body is 1.5 cm,
    and where an edge is rounded to depends on the camera roll and the photo's resolution (the
    re-framing scatter of docs/evaluation.md). :func:`body_pixels` is the 0/1 body the network
    was trained on; the served model reads the canvas at sub-pixel phases
    (:func:`bodyshape.nets.subpixel_looks`). Every row of the body keeps a non-zero pixel, so
    the body is exactly ``body_height_px`` rows tall. If the body is too wide for the canvas at
    that height (arms spread wide), it is scaled down to fit the width instead. Idempotent:
    normalising a normalised silhouette returns it unchanged.
    """
    if np.ndim(mask) != 2:
        raise BodyShapeError(f"a silhouette must be a 2-D mask, got shape {np.shape(mask)}")
    ch, cw = canvas_hw
    if body_height_px > ch - 2:
        raise BodyShapeError("body_height_px must leave a margin on the canvas")
    cover = _coverage(mask)
    top, bottom, left, right = bounding_box(cover > 0)
    crop = cover[top:bottom, left:right]
    h, w = crop.shape
    centred = top == (ch - min(h, body_height_px)) // 2 and abs((left + right) / 2 - cw / 2) <= 1
    if cover.shape == canvas_hw and centred and (h == body_height_px or w >= cw - 2):
        return np.where(cover > 0, np.clip(np.rint(cover * 255), 1, 255), 0).astype(np.uint8)  # normalised already
    scale = min(body_height_px / h, (cw - 2) / w)
    th = math.ceil(h * scale - 1e-9)  # the body's rows: exactly body_height_px unless too wide
    # Rows: the crop's rows onto th canvas rows. Columns: the crop, padded with background,
    # onto the canvas's whole width with the body's centre at the canvas's centre, so that the
    # width is scaled by the same factor as the height (not stretched to a whole number of
    # pixels: up to 1% of a girth) and the body does not jump by a pixel when its width
    # crosses a whole number. The padding is counted at `up` times the mask's resolution, so
    # it errs by at most 1/16 of a canvas pixel.
    up = max(1, math.ceil(8 * scale))
    fine = np.repeat(np.repeat(crop, up, axis=0), up, axis=1) if up > 1 else crop
    pad = max(0, round(cw * up / scale) - w * up)
    fine = np.pad(fine, ((0, 0), (pad // 2, pad - pad // 2)))
    body = cv2.resize(fine, (cw, th), interpolation=cv2.INTER_AREA)  # area coverage: scale / up <= 1/8
    # Round to bytes; a pixel the body touches stays non-zero (>= 1/255), so the body's rows
    # and columns (its bounding box) survive the rounding.
    body = np.where(body > 1e-6, np.clip(np.rint(body * 255), 1, 255), 0).astype(np.uint8)
    if not (body >= BODY_THRESHOLD).any():
        raise BodyShapeError("the silhouette vanished when scaled: it is too thin")
    out = np.zeros(canvas_hw, np.uint8)
    y0 = (ch - th) // 2
    out[y0 : y0 + th] = body
    return out


def body_pixels(silhouettes: np.ndarray) -> np.ndarray:
    """Coverage canvases (..., H, W) uint8 (or 0/1, bool: :func:`as_canvases`) -> bool: the
    pixels at least half covered (the 0/1 body of the training data and of the capture checks)."""
    return as_canvases(silhouettes) >= BODY_THRESHOLD


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill background regions that do not touch the image border."""
    binary = (mask > 0).astype(np.uint8)
    padded = np.pad(binary, 1)
    flood = padded.copy()
    ff_mask = np.zeros((padded.shape[0] + 2, padded.shape[1] + 2), np.uint8)
    cv2.floodFill(flood, ff_mask, (0, 0), 1)
    holes = (flood == 0)[1:-1, 1:-1]
    return ((binary > 0) | holes).astype(np.uint8) * 255


def as_canvases(silhouettes: np.ndarray, what: str = "silhouettes") -> np.ndarray:
    """Silhouettes as the model takes them: uint8 coverage canvases (..., H, W), contiguous.
    bool masks and uint8 0/1 masks (the training sets' unpacked bits) become 0/255, as
    :func:`_coverage` reads them; any other dtype is refused (a float mask is ambiguous)."""
    s = np.asarray(silhouettes)
    if s.dtype == bool:
        return np.ascontiguousarray(s.astype(np.uint8) * 255)
    if s.dtype != np.uint8:
        raise BodyShapeError(f"{what} must be uint8 coverage canvases (or bool), got {s.dtype}")
    if s.ndim >= 2 and s.size:
        zero_one = s.max(axis=(-2, -1), keepdims=True) <= 1
        if zero_one.any():
            s = np.where(zero_one, s * np.uint8(255), s)
    return np.ascontiguousarray(s)


def to_network_input(silhouettes: np.ndarray) -> np.ndarray:
    """Coverage canvases (or bool) (..., H, W) -> float32 in {0, 1}: :func:`body_pixels`, the
    look at phase 0 of :func:`bodyshape.nets.subpixel_looks`."""
    return body_pixels(silhouettes).astype(np.float32)
