"""Photo -> clean body mask -> the network's silhouette. One path for the page, the CLI and tests.

    seg = Segmenter()                                   # rembg u2netp, offline; build once
    front = photo_to_silhouette("front.jpg", "front", seg)
    side = photo_to_silhouette("side.jpg", "side", seg)
    check_view_pair(front, side)                        # swapped photos are an error
    front.silhouette                                    # (128, 96) uint8 coverage canvas, network input

Steps: read the file defensively (bytes and pixel limits before decoding, decompression-bomb
guard, EXIF rotation, transparency over white), shrink it (rembg works at 320x320 anyway),
rembg ``u2netp`` person probability (a second run zoomed on the person,
:func:`person_probability`), threshold, checks on the connected components (no person,
several people, person cut off at the frame edge), keep the person, remove specks,
fill holes, check that its outline can be a standing person (not sideways, not a plain round
or box shape), then :func:`bodyshape.silhouette.normalize_silhouette` (the same function the
training data went through). Every failure is an :class:`InputImageError` with a message
for the person holding the camera.
"""

from __future__ import annotations

import io
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from bodyshape.errors import InputImageError
from bodyshape.shared import Shared
from bodyshape.silhouette import bounding_box, fill_holes, normalize_silhouette

#: Largest upload accepted, bytes (a 48 MP phone JPEG is about 15-25 MB).
MAX_BYTES: int = 25 * 1024 * 1024
#: Largest decoded image accepted, pixels (checked from the header, before decoding).
MAX_PIXELS: int = 50_000_000
#: Smallest usable photo side, pixels.
MIN_SIDE: int = 200
#: Photos are shrunk to this longest side before segmentation (rembg runs at 320x320).
WORK_LONG_SIDE: int = 1024
#: rembg probability above which a pixel is body.
THRESHOLD: int = 128
#: The zoomed second segmentation (:func:`person_probability`): the crop around the person the
#: first run found reaches this share of their height above them (room for a head the first
#: run missed), below them and to each side, and is at least ZOOM_ASPECT as wide as tall (a
#: phone photo's 3:4, so rembg squeezes it into its 320x320 input as it squeezes the photo).
ZOOM_MARGIN_TOP: float = 0.25
ZOOM_MARGIN_BOTTOM: float = 0.05
ZOOM_MARGIN_SIDE: float = 0.10
ZOOM_ASPECT: float = 0.75
#: No second run when the crop would cover this share of the photo or more (nothing to zoom).
ZOOM_MAX_AREA: float = 0.9
#: Version of what :func:`person_probability` returns, part of the cached photo splits' names:
#: 1 one rembg run, 2 with the zoomed second run.
SEGMENTATION_VERSION: int = 2
#: A second blob at least this tall (relative to the largest) and this large counts as a person.
OTHER_PERSON_HEIGHT: float = 0.5
OTHER_PERSON_AREA: float = 0.2
#: Body pixels within this many pixels of the frame edge mean the person is cut off.
EDGE_MARGIN_PX: int = 2
#: The person must be at least this fraction of the photo's height.
MIN_PERSON_HEIGHT: float = 0.3
#: A standing person is taller than wide: the capture pose's front view (arms out) is 0.6-0.75
#: as wide as tall, a T-pose about 1. A wider figure is a sideways photo or not a standing person.
MAX_PERSON_WIDTH_OVER_HEIGHT: float = 1.2
#: Area of the figure over the area of its convex hull. A person's outline has the gaps of the
#: arms, the neck and the legs (synthetic capture-pose bodies: 0.34-0.50 front, 0.62-0.73 side);
#: a filled round or box shape (a ball, a bottle, a drawing of a house or a smiley) is above 0.9.
MAX_PERSON_SOLIDITY: float = 0.9

VIEWS = ("front", "side")


@dataclass
class PhotoSilhouette:
    """A photo's result. ``mask`` is at work resolution; ``silhouette`` is the network input."""

    view: str
    image: np.ndarray  # (H, W, 3) uint8 RGB, shrunk work copy
    probability: np.ndarray  # (H, W) uint8 rembg output
    mask: np.ndarray  # (H, W) uint8 0/255 cleaned person mask
    silhouette: np.ndarray  # (128, 96) uint8 coverage canvas (bodyshape.silhouette)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step

    @property
    def width_over_height(self) -> float:
        top, bottom, left, right = bounding_box(self.mask)
        return (right - left) / (bottom - top)


# ----------------------------------------------------------------------------- reading
def load_photo(
    source: str | os.PathLike | bytes | np.ndarray | Image.Image, label: str = "photo"
) -> np.ndarray:
    """Any photo source -> (H, W, 3) uint8 RGB, shrunk so its long side is <= WORK_LONG_SIDE.

    Refuses (InputImageError) non-images, corrupt files, files over MAX_BYTES, images over
    MAX_PIXELS (checked before decoding) or under MIN_SIDE.
    """
    if isinstance(source, np.ndarray):
        arr = _array_to_rgb(source, label)
    elif isinstance(source, Image.Image):
        arr = _pil_to_rgb(source, label)
    else:
        data = _read_bytes(source, label)
        arr = _decode(data, label)
    h, w = arr.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise InputImageError(
            f"the {label} is too small ({w}x{h} pixels); use a photo at least {MIN_SIDE} pixels wide"
        )
    scale = WORK_LONG_SIDE / max(h, w)
    if scale < 1:
        arr = cv2.resize(arr, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(arr)


def _read_bytes(source: str | os.PathLike | bytes, label: str) -> bytes:
    if isinstance(source, bytes | bytearray):
        data = bytes(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise InputImageError(f"the {label} could not be found; upload it again")
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise InputImageError(
                f"the {label} file is too large ({size / 2**20:.1f} MB; the limit is {MAX_BYTES / 2**20:.0f} MB)"
            )
        data = path.read_bytes()
    if len(data) > MAX_BYTES:
        raise InputImageError(
            f"the {label} file is too large ({len(data) / 2**20:.1f} MB; the limit is {MAX_BYTES / 2**20:.0f} MB)"
        )
    if not data:
        raise InputImageError(f"the {label} file is empty")
    return data


def _decode(data: bytes, label: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        im = _open_header(data, label)
        try:
            if getattr(im, "n_frames", 1) > 1 and im.format not in ("JPEG", "MPO"):
                im.seek(0)  # animated GIF/WebP/TIFF: first frame only
            im.load()
            return _pil_to_rgb(im, label)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise InputImageError(_too_many_pixels(label)) from e
        except (OSError, SyntaxError, ValueError, EOFError) as e:  # a cut-off download, a broken file
            raise InputImageError(
                f"the {label} is not an image that can be read: the file is damaged or incomplete; "
                "upload the photo again"
            ) from e


#: ISO-BMFF brands of HEIC/HEIF files (iPhone photos), read at bytes 8-12 after "ftyp".
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")


def _is_heif(data: bytes) -> bool:
    return data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS


def enable_heif() -> bool:
    """Teach Pillow to read HEIC/HEIF (pillow-heif, part of the ``demo`` extra); False without it.

    AVIF and WebP need nothing: Pillow >= 11.2 reads both.
    """
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()  # idempotent
    return True


def _open_header(data: bytes, label: str) -> Image.Image:
    """The image's header only (nothing decoded yet): refuses non-images and too many pixels."""
    if _is_heif(data) and not enable_heif():
        raise InputImageError(
            f"the {label} is a HEIC/HEIF photo, which needs the pillow-heif package "
            "(pip install 'bodyshape[demo]'); or save it as JPEG"
        )
    try:
        im = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InputImageError(_too_many_pixels(label)) from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
        raise InputImageError(
            f"the {label} is not an image that can be read (use a JPEG, PNG, HEIC, WebP or AVIF photo)"
        ) from e
    w, h = im.size
    if w * h > MAX_PIXELS:
        raise InputImageError(_too_many_pixels(label, f"{w}x{h} = {w * h / 1e6:.0f} megapixels"))
    return im


def _too_many_pixels(label: str, size: str = "") -> str:
    return (
        f"the {label} is too large ({size + '; ' if size else ''}the limit is {MAX_PIXELS / 1e6:.0f} "
        "megapixels); use a smaller photo"
    )


def _pil_to_rgb(im: Image.Image, label: str) -> np.ndarray:
    try:
        im = ImageOps.exif_transpose(im)  # phone photos are stored sideways with an EXIF flag
    except Exception as e:  # a broken EXIF block: use the pixels as stored  # noqa: BLE001
        warnings.warn(f"ignoring unreadable EXIF orientation of the {label}: {e}", stacklevel=2)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    if im.mode.startswith("I") or im.mode == "F":  # 16/32-bit grey (PNG, TIFF), any byte order
        return _wide_grey_to_rgb(np.asarray(im, np.float32))
    return np.asarray(im.convert("RGB"), np.uint8)


def _wide_grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    """(H, W) float greys of any range -> (H, W, 3) uint8, stretched to 0..255."""
    grey = np.nan_to_num(grey, nan=0.0, posinf=0.0, neginf=0.0)
    lo, span = float(grey.min()), float(np.ptp(grey))
    u8 = (255 * (grey - lo) / max(span, 1e-6)).astype(np.uint8)
    return np.dstack([u8] * 3)


def _array_to_rgb(a: np.ndarray, label: str) -> np.ndarray:
    if a.ndim == 2:
        a = np.dstack([a] * 3)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise InputImageError(f"the {label} must be an RGB image, got an array of shape {a.shape}")
    if a.shape[0] * a.shape[1] > MAX_PIXELS:
        raise InputImageError(f"the {label} is too large ({a.shape[1]}x{a.shape[0]} pixels)")
    if a.dtype != np.uint8:
        a = np.clip(a * (255.0 if a.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if a.shape[2] == 4:
        alpha = a[..., 3:].astype(np.float32) / 255
        a = (a[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    return a


# ----------------------------------------------------------------------------- segmentation
class Segmenter:
    """rembg ``u2netp`` person segmentation, offline. Build once; thread-safe to call."""

    def __init__(self, model: str = "u2netp") -> None:
        from bodyshape.assets import u2net_home, u2netp_path

        u2netp_path()  # clear error naming `bodyshape setup` if the weights are missing
        os.environ.setdefault("U2NET_HOME", str(u2net_home()))  # rembg reads it itself
        import rembg  # heavy import, deferred

        self.session = rembg.new_session(model)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (H, W) uint8 person probability 0..255."""
        mask = self.session.predict(Image.fromarray(rgb))[0]
        return np.asarray(mask, np.uint8)


_SEGMENTER: Shared[Segmenter] = Shared(Segmenter, "rembg segmenter")


def get_segmenter() -> Segmenter:
    """The process-wide segmenter (the ONNX session is read-only after construction)."""
    return _SEGMENTER.get()


def zoom_crop(box: tuple[int, int, int, int], hw: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) of the zoomed second run around a person found at ``box`` (top, bottom,
    left, right; exclusive ends) in a photo of ``hw``, or None when the crop would be (almost)
    the whole photo."""
    top, bottom, left, right = box
    h, w = hw
    tall = bottom - top
    y0, y1 = max(0, round(top - ZOOM_MARGIN_TOP * tall)), min(h, round(bottom + ZOOM_MARGIN_BOTTOM * tall))
    half = max((right - left) / 2 + ZOOM_MARGIN_SIDE * tall, ZOOM_ASPECT * (y1 - y0) / 2)
    centre = (left + right) / 2
    x0, x1 = max(0, round(centre - half)), min(w, round(centre + half))
    if (y1 - y0) * (x1 - x0) >= ZOOM_MAX_AREA * h * w:
        return None
    return y0, y1, x0, x1


def person_probability(rgb: np.ndarray, segmenter: Segmenter | None = None, zoom: bool = True) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) uint8 person probability: rembg on the photo, then again
    on a crop around the largest figure it found, pasted back over the first run.

    rembg reads any photo at 320x320, so a person at 55% of the photo's height is read at 60% of
    the resolution of one at 90%, and on a small person u2netp can miss the head altogether (a
    headless mask, its chest read 17 cm too large; docs/evaluation.md). In the crop the person
    fills about three quarters of rembg's input however the photo was framed. Outside the crop
    the first run stays, so a second person is still found by :func:`person_mask`.
    ``zoom=False``: the first run alone (the page until 2026-12-05; training.capture_factors).
    """
    seg = segmenter or get_segmenter()
    first = seg(rgb)
    if not zoom:
        return first
    binary = (first >= THRESHOLD).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if n <= 1:
        return first  # nothing found: person_mask says so
    i = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, bw, bh = (
        int(stats[i, c]) for c in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT)
    )
    crop = zoom_crop((y, y + bh, x, x + bw), first.shape)
    if crop is None:
        return first
    y0, y1, x0, x1 = crop
    prob = first.copy()
    prob[y0:y1, x0:x1] = seg(np.ascontiguousarray(rgb[y0:y1, x0:x1]))
    return prob


# ----------------------------------------------------------------------------- mask cleaning
def person_mask(probability: np.ndarray, label: str = "photo") -> np.ndarray:
    """rembg probability (H, W) uint8 -> the one person's cleaned mask, uint8 0/255.

    InputImageError when no person is found, when there seem to be several people, or when
    the person touches the frame edge (cut off).
    """
    h, w = probability.shape
    binary = (probability >= THRESHOLD).astype(np.uint8)
    # A small opening removes thin bridges (a picture frame touching an arm) and specks.
    k = max(3, round(min(h, w) / 250)) | 1
    binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if n <= 1 or stats[1:, cv2.CC_STAT_AREA].max() < 0.002 * h * w:
        raise InputImageError(
            f"no person found in the {label}: stand in front of a plain background, whole body in the picture"
        )
    order = np.argsort(-stats[1:, cv2.CC_STAT_AREA]) + 1
    main = order[0]
    area, height = stats[main, cv2.CC_STAT_AREA], stats[main, cv2.CC_STAT_HEIGHT]
    if height < MIN_PERSON_HEIGHT * h:
        raise InputImageError(
            f"no standing person found in the {label} (the largest figure is only {100 * height / h:.0f}% of "
            "the photo's height); the whole body should fill most of the upright picture, head to feet"
        )
    others = [
        i for i in order[1:]
        if stats[i, cv2.CC_STAT_HEIGHT] >= OTHER_PERSON_HEIGHT * height
        and stats[i, cv2.CC_STAT_AREA] >= OTHER_PERSON_AREA * area
    ]  # fmt: skip
    if others:
        raise InputImageError(
            f"the {label} seems to show more than one person; only the person being measured may be in the picture"
        )
    x, y, bw, bh = (
        stats[main, c] for c in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT)
    )
    cut = []
    if y <= EDGE_MARGIN_PX:
        cut.append("top (head)")
    if y + bh >= h - EDGE_MARGIN_PX:
        cut.append("bottom (feet)")
    if x <= EDGE_MARGIN_PX:
        cut.append("left")
    if x + bw >= w - EDGE_MARGIN_PX:
        cut.append("right")
    if cut:
        raise InputImageError(
            f"the person in the {label} is cut off at the {' and '.join(cut)} edge of the picture; "
            "step back or hold the camera further away so that the whole body is in the frame with some space around it"
        )
    person = (labels == main).astype(np.uint8) * 255
    return fill_holes(person)


def check_person_shape(mask: np.ndarray, label: str = "photo") -> None:
    """InputImageError when the cleaned mask cannot be a standing person's outline.

    rembg finds the most salient object, not necessarily a person: a sideways photo, a ball or
    a drawing also give one big blob. These two checks catch the clear cases.
    """
    top, bottom, left, right = bounding_box(mask)
    if right - left > MAX_PERSON_WIDTH_OVER_HEIGHT * (bottom - top):
        raise InputImageError(
            f"the figure in the {label} is wider than it is tall: the photo seems to be sideways. Turn the "
            "photo upright (or take it again holding the phone upright), with the person standing"
        )
    if _solidity(mask) > MAX_PERSON_SOLIDITY:
        raise InputImageError(
            f"the {label} does not seem to show a person: the figure found is a plain round or box shape, "
            "without arms and legs. Use a real photo of the person standing, whole body in the picture"
        )


def _solidity(mask: np.ndarray) -> float:
    """Area of the mask's largest outline over the area of its convex hull (1 for a convex blob)."""
    contours, _ = cv2.findContours((mask > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    outline = max(contours, key=cv2.contourArea)
    hull_area = cv2.contourArea(cv2.convexHull(outline))
    return float(cv2.contourArea(outline) / hull_area) if hull_area > 0 else 1.0


def photo_to_silhouette(
    source: str | os.PathLike | bytes | np.ndarray | Image.Image,
    view: str,
    segmenter: Segmenter | None = None,
    zoom: bool = True,
) -> PhotoSilhouette:
    """One photo -> :class:`PhotoSilhouette` (the normalised network input and what led to it).
    ``zoom``: see :func:`person_probability`."""
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    label = f"{view} photo"
    t0 = time.perf_counter()
    rgb = load_photo(source, label)
    t1 = time.perf_counter()
    prob = person_probability(rgb, segmenter, zoom)
    t2 = time.perf_counter()
    mask = person_mask(prob, label)
    check_person_shape(mask, label)
    sil = normalize_silhouette(mask)
    t3 = time.perf_counter()
    return PhotoSilhouette(view, rgb, prob, mask, sil, {"read": t1 - t0, "rembg": t2 - t1, "clean": t3 - t2})


#: The front view (arms away from the body) is much wider for its height than the profile.
#: Measured on synthetic capture-pose bodies: front 0.55-0.75, side 0.2-0.35.
SWAP_MARGIN: float = 1.0


def check_view_pair(front: PhotoSilhouette, side: PhotoSilhouette) -> None:
    """InputImageError when the two photos look swapped (or both taken from the same side)."""
    f, s = front.width_over_height, side.width_over_height
    if f < s * SWAP_MARGIN:
        raise InputImageError(
            f"the front and side photos look swapped: the front silhouette is narrower for its height "
            f"({f:.2f}) than the side one ({s:.2f}). Put the photo facing the camera, arms away from the "
            "body, in 'Front photo' and the profile photo in 'Side photo'"
        )
