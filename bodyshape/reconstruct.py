"""From network output to the user's body: mesh scaled to the stated height, measurements.

This is the one place that turns shape parameters into the mesh users see; the Triton
``body_mesh`` model and the in-process path both call :func:`mesh_from_shape`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from bodyshape.body_model import N_SHAPE, BodyModel, check_shape, clamp_shape, get_body_model
from bodyshape.errors import BodyShapeError
from bodyshape.silhouette import as_canvases

#: The heights the product accepts, everywhere (page, CLI, Triton models): the only copy.
MIN_HEIGHT_CM, MAX_HEIGHT_CM = 100.0, 230.0


class HeightError(BodyShapeError):
    """A stated height that is not a number or outside [MIN_HEIGHT_CM, MAX_HEIGHT_CM]."""


def _range_message(got: str) -> str:
    return (
        f"height must be between {MIN_HEIGHT_CM:.0f} and {MAX_HEIGHT_CM:.0f} cm, got {got} "
        "(enter it in centimetres: 5 ft 10 in = 178 cm)"
    )


def check_height_cm(height_cm: object) -> float:
    """A typed height in cm (number or text, as a page or a command line gets it) -> metres.

    Raises :class:`HeightError` with a message a user can act on.
    """
    try:
        h = float(height_cm)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):  # empty, text, a 400-digit number
        h = math.nan
    if not math.isfinite(h):  # also "nan", "inf": not a height, whatever the range says
        raise HeightError("enter your height in centimetres (for example 172)")
    if not MIN_HEIGHT_CM <= h <= MAX_HEIGHT_CM:
        raise HeightError(_range_message(f"{h:g} cm"))
    return h / 100.0


def check_height_m(height_m: np.ndarray) -> np.ndarray:
    """Heights in metres (any shape) -> (B,) float32, all finite and in range, or HeightError."""
    h = np.asarray(height_m, np.float32).reshape(-1)
    if not np.isfinite(h).all() or (h < MIN_HEIGHT_CM / 100).any() or (h > MAX_HEIGHT_CM / 100).any():
        raise HeightError(_range_message(f"{np.round(h * 100, 1).tolist()} cm"))
    return h


def scale_to_height(vertices: np.ndarray, height_m: np.ndarray) -> np.ndarray:
    """Scale each body (B, V, 3) uniformly to its stated height; put the feet on z = 0.

    A silhouette fixes proportions but not size; the typed height fixes the size.
    """
    v = np.asarray(vertices, np.float32)
    z = v[..., 2]
    zmin = z.min(axis=1, keepdims=True)
    cur = z.max(axis=1, keepdims=True) - zmin
    s = (np.asarray(height_m, np.float32).reshape(-1, 1) / cur)[..., None]
    out = v.copy()
    out[..., 2] -= zmin
    return out * s


def mesh_from_shape(shape: np.ndarray, height_m: np.ndarray, model: BodyModel | None = None) -> np.ndarray:
    """Shape parameters (B, N_SHAPE) + heights (B,) -> rest-pose vertices (B, V, 3), metres."""
    model = model or get_body_model()
    shape = np.asarray(shape, np.float32)
    check_shape(shape)
    h = check_height_m(height_m)
    if len(h) != len(shape):
        raise BodyShapeError(f"got {len(shape)} shape vectors but {len(h)} heights")
    shape_t = clamp_shape(torch.from_numpy(shape))
    return scale_to_height(model.rest_vertices(shape_t), h)


@dataclass
class Reconstruction:
    shape: np.ndarray  # (N_SHAPE,)
    vertices: np.ndarray  # (V, 3) metres, rest A-pose, feet on z=0, scaled to height
    faces: np.ndarray  # (F, 3)
    measurements: dict[str, float]  # metres


class LocalPredictor:
    """In-process network inference (PyTorch), the reference for ONNX and Triton parity.
    ``phases``: sub-pixel looks per canvas (default the product's; 1 reads the 0/1 body only,
    as before the sub-pixel reader, for comparisons)."""

    #: Canvas pairs per network call (each is ``phases`` looks).
    BATCH = 32

    def __init__(self, weights: str | None = None, phases: int | None = None) -> None:
        from bodyshape.checkpoint import load_model
        from bodyshape.nets import SubpixelReader
        from bodyshape.paths import WEIGHTS_DIR
        from bodyshape.silhouette import SUBPIXEL_PHASES

        self.model = load_model(weights or WEIGHTS_DIR / "fused.safetensors")
        self.reader = SubpixelReader(self.model, phases or SUBPIXEL_PHASES).eval()

    @torch.no_grad()
    def predict_shape(self, front: np.ndarray, side: np.ndarray, height_m: np.ndarray) -> np.ndarray:
        """Normalised silhouettes (B, H, W) uint8 coverage canvases + heights (B,) -> shape
        (B, N_SHAPE), the mean over the sub-pixel looks (:class:`bodyshape.nets.SubpixelReader`)."""
        f = torch.from_numpy(as_canvases(front))
        s = torch.from_numpy(as_canvases(side))
        h = torch.from_numpy(check_height_m(height_m))
        if not len(f):
            return np.zeros((0, N_SHAPE), np.float32)
        # a bounded batch: each canvas is `phases` network inputs, and thousands at once thrash the
        # caches (and memory) for no gain; rows are independent (eval mode), so the result is the same
        b = self.BATCH
        out = torch.cat([self.reader(f[i : i + b], s[i : i + b], h[i : i + b]) for i in range(0, len(f), b)]).numpy()
        assert out.shape[1] == N_SHAPE
        return out
