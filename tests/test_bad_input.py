"""Bad input, case by case, through the page's request handler (real rembg u2netp, offline).

Each row of ``CASES`` is one upload (or height) a person could really send, with the message
fragment the page must answer with. Every case must come back as a status (the handler never
raises) as a :class:`~demo.handler.Failure` with the message, without a stack trace, without
a body, and with bounded memory; the few odd-but-valid formats (CMYK, 16-bit, EXIF-rotated,
animated GIF, transparency) must work and give the same silhouette as the plain photo. After
the table, the same handler still serves a good pair. One test sends a handful of the cases
through the real launched Gradio page (gradio_client), where a refused request is an error.

All images are generated here, into temporary folders: no binary fixtures.
"""

from __future__ import annotations

import io
import re
import resource
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from bodyshape import photo
from bodyshape.assets import have_u2netp
from bodyshape.measurements import MEASUREMENT_NAMES
from demo.handler import Failure, Reconstruction

pytestmark = pytest.mark.skipif(not have_u2netp(), reason="u2netp.onnx missing: run `bodyshape setup`")

GOOD_HEIGHT_CM = 172
#: A request that hangs (e.g. decoding a bomb) fails the case instead of stalling the suite.
CASE_TIME_LIMIT_S = 60.0
#: Peak memory (ru_maxrss) may grow at most this much during one case.
CASE_MEMORY_LIMIT_MB = 200
#: The bomb: a PNG whose header says 20000 x 20000 (400 MP, 400 MB as decoded 1-bit pixels and
#: 1.2 GB as RGB), about 50 kB on disk.
BOMB_SIDE = 20_000
#: Silhouettes of the odd-but-valid formats vs. the plain photo's: intersection over union.
#: (Other bodies' silhouettes score 0.73-0.87 against this one.)
SAME_SILHOUETTE_IOU = 0.97

NOT_AN_IMAGE = r"is not an image that can be read \(use a JPEG, PNG, HEIC, WebP or AVIF photo\)"
DAMAGED = r"is not an image that can be read: the file is damaged or incomplete"
#: An empty room: "No person found" or, when u2netp outlines a picture frame on the wall,
#: "No standing person found ... (the largest figure is only 9% of the photo's height)".
NO_PERSON = r"No (standing )?person found in the {view} photo"
NOT_A_PERSON = r"does not seem to show a person: the figure found is a plain round or box shape"
HEIGHT_RANGE = r"Height must be between 100 and 230 cm"
HEIGHT_MISSING = r"Enter your height in centimetres \(for example 172\)"


@dataclass(frozen=True)
class Case:
    """One request: which generated file goes in which slot, the height, the expected answer.

    ``expect`` is a regular expression the failure's message must contain; None means the
    request must succeed ("**Done") with a silhouette within ``min_iou`` of the one the page
    gets from ``same_as`` (the plain photo, or for 16-bit grey the 8-bit grey photo).
    """

    front: str | None = "front.png"  # a file made by make_inputs, or None (no photo)
    side: str | None = "side.png"
    height: object = GOOD_HEIGHT_CM
    expect: str | None = None
    max_bytes: int | None = None  # bodyshape.photo.MAX_BYTES for this case
    same_as: str = "front.png"
    min_iou: float = SAME_SILHOUETTE_IOU


CASES: dict[str, Case] = {
    # -- files that are no image, or a broken one
    "zero-byte file": Case(front="zero.jpg", expect=r"The front photo file is empty"),
    "truncated JPEG (cut in half)": Case(front="half.jpg", expect=r"The front photo " + DAMAGED),
    "truncated JPEG, side slot": Case(side="half.jpg", expect=r"The side photo " + DAMAGED),
    "text file renamed .jpg": Case(front="notes.jpg", expect=r"The front photo " + NOT_AN_IMAGE),
    "HTML page": Case(front="page.html", expect=r"The front photo " + NOT_AN_IMAGE),
    "HTML page renamed .png, side slot": Case(side="page.png", expect=r"The side photo " + NOT_AN_IMAGE),
    "no front photo": Case(front=None, expect=r"Add a front photo"),
    # -- sizes
    "1x1 image": Case(front="1x1.png", expect=r"The front photo is too small \(1x1 pixels\)"),
    "1x1 image, side slot": Case(side="1x1.png", expect=r"The side photo is too small \(1x1 pixels\)"),
    "20000x20000 PNG (decompression bomb)": Case(
        front="bomb.png", expect=r"The front photo is too large \(.*the limit is 50 megapixels\)"
    ),
    # A valid JPEG with 1.2 MB of trailing padding, the limit lowered to 1 MB (not 25 MB on disk).
    "file over the byte limit": Case(
        front="padded.jpg",
        max_bytes=2**20,
        expect=r"The front photo file is too large \(1\.2 MB; the limit is 1 MB\)",
    ),
    # -- transparency
    # Transparent pixels are composited over white: a blank white picture.
    "RGBA, fully transparent": Case(
        front="transparent_rgba.png", expect=r"No person found in the front photo"
    ),
    "LA, fully transparent": Case(front="transparent_la.png", expect=r"No person found in the front photo"),
    # A grey+alpha image whose only content is its alpha channel (the person's outline):
    # composited over white it is a dark figure on white, which is a person's outline.
    # (Re-segmenting a flat figure moves the outline by a pixel or so: IoU 0.975.)
    "LA, person only in the alpha channel": Case(front="alpha_person_la.png", min_iou=0.95),
    # -- odd but valid encodings of a real (synthetic) person: must work
    "CMYK JPEG": Case(front="cmyk.jpg"),
    # A grey photo segments a little differently from the colour one (IoU 0.96 for 8-bit grey
    # too): the 16-bit ones must match the 8-bit grey photo's silhouette.
    "16-bit grey PNG (I;16)": Case(front="grey16.png", same_as="grey8.png"),
    "16-bit RGB PNG": Case(front="rgb16.png"),
    "16-bit big-endian grey TIFF (I;16B)": Case(front="grey16b.tiff", same_as="grey8.png"),
    "animated GIF (first frame: the person)": Case(front="animated.gif"),
    "EXIF Orientation=6 (stored rotated)": Case(front="exif6.jpg"),
    "EXIF Orientation=8 (stored rotated)": Case(front="exif8.jpg"),
    "EXIF Orientation=6, side slot": Case(side="exif6_side.jpg"),
    # The same rotated pixels without the EXIF flag: a sideways photo is refused, not measured.
    "sideways photo without EXIF": Case(
        front="sideways.jpg",
        expect=r"The figure in the front photo is wider than it is tall: the photo seems to be sideways",
    ),
    "tiny animated GIF (a spinner)": Case(
        front="spinner.gif", expect=r"The front photo is too small \(64x64 pixels\)"
    ),
    # -- no person, not a person, more than one
    "no person (textured room only)": Case(front="empty_room.jpg", expect=NO_PERSON.format(view="front")),
    "no person, side slot": Case(side="empty_room.jpg", expect=NO_PERSON.format(view="side")),
    # Cartoons. u2netp is a saliency model, not a person detector: it outlines whatever stands
    # out. A stick-figure or flat clip-art *person* drawing has a person's outline and is
    # measured like a photo (nothing in the outline tells them apart); these are not persons:
    "cartoon: geometric shapes": Case(
        front="cartoon_shapes.png",
        expect=r"No standing person found in the front photo \(the largest figure is only \d+% of the photo's height\)",
    ),
    "cartoon: clip-art house and sun": Case(front="cartoon_house.png", expect=NOT_A_PERSON),
    "cartoon: smiley": Case(front="cartoon_smiley.png", expect=NOT_A_PERSON),
    "two people side by side": Case(
        front="two_people.jpg", expect=r"The front photo seems to show more than one person"
    ),
    # -- heights (the photos are good)
    "height 0": Case(height=0, expect=HEIGHT_RANGE + r", got 0 cm"),
    "height -5": Case(height=-5, expect=HEIGHT_RANGE + r", got -5 cm"),
    "height 500": Case(height=500, expect=HEIGHT_RANGE + r", got 500 cm"),
    "height 1.72 (metres)": Case(height=1.72, expect=HEIGHT_RANGE + r", got 1\.72 cm"),
    "height 'text'": Case(height="text", expect=HEIGHT_MISSING),
    "height None": Case(height=None, expect=HEIGHT_MISSING),
    "height ''": Case(height="", expect=HEIGHT_MISSING),
    "height 'nan'": Case(height="nan", expect=HEIGHT_MISSING),
    "height 'inf'": Case(height="inf", expect=HEIGHT_MISSING),
    "height float nan": Case(height=float("nan"), expect=HEIGHT_MISSING),
    "height 1e400 (overflows to inf)": Case(height="1e400", expect=HEIGHT_MISSING),
    "height 10**400 (too large for a float)": Case(height=10**400, expect=HEIGHT_MISSING),
}


# ----------------------------------------------------------------------------- the inputs
def _jpeg(img: np.ndarray | Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    (img if isinstance(img, Image.Image) else Image.fromarray(img)).save(buf, "JPEG", quality=95, **kw)
    return buf.getvalue()


def _save(path: Path, img: np.ndarray | Image.Image, **kw) -> None:
    (img if isinstance(img, Image.Image) else Image.fromarray(img)).save(path, **kw)


def bomb_png(path: Path, side: int = BOMB_SIDE) -> None:
    """A valid black 1-bit PNG of side x side pixels, written without ever holding the pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = bytes((1 + (side + 7) // 8) * 1000)  # 1000 rows: filter byte 0 + black pixels
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(rows) for _ in range(side // 1000)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def _canvas(colour: tuple[int, int, int] = (250, 250, 245), hw: tuple[int, int] = (800, 600)) -> np.ndarray:
    img = np.empty(hw + (3,), np.uint8)
    img[:] = colour
    return img


def cartoon_shapes() -> np.ndarray:
    img = _canvas()
    cv2.circle(img, (180, 250), 110, (230, 50, 50), -1)
    cv2.rectangle(img, (320, 150), (520, 350), (50, 90, 220), -1)
    cv2.fillPoly(img, [np.array([[150, 700], [300, 450], [450, 700]])], (40, 180, 70))
    return img


def cartoon_house() -> np.ndarray:
    img = _canvas((135, 206, 235))
    img[620:] = (80, 170, 60)  # grass
    cv2.rectangle(img, (150, 400), (450, 640), (200, 60, 50), -1)
    cv2.fillPoly(img, [np.array([[120, 400], [300, 250], [480, 400]])], (120, 60, 30))
    cv2.rectangle(img, (270, 520), (330, 640), (90, 50, 20), -1)  # door
    cv2.circle(img, (510, 110), 55, (255, 220, 0), -1)  # sun
    return img


def cartoon_smiley() -> np.ndarray:
    img = _canvas()
    cv2.circle(img, (300, 400), 220, (255, 215, 0), -1)
    for x in (230, 370):
        cv2.circle(img, (x, 340), 25, (0, 0, 0), -1)
    cv2.ellipse(img, (300, 440), (120, 80), 0, 20, 160, (0, 0, 0), 10)
    return img


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


# Orientation 6: the stored pixels are the scene turned 90 degrees counter-clockwise (a viewer
# turns them clockwise); 8: the other way round.
_STORED_ROTATION = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


def make_inputs(d: Path, front: np.ndarray, side: np.ndarray, masks, rng) -> dict[str, str]:
    """Every file the table uses, written into ``d``: name -> path."""
    from demo.synthetic import background, compose_photo

    up = Image.fromarray(front)
    files: dict[str, bytes | np.ndarray | Image.Image] = {
        "front.png": front,
        "side.png": side,
        "front.jpg": _jpeg(front),
        "zero.jpg": b"",
        "half.jpg": _jpeg(front)[: len(_jpeg(front)) // 2],
        "notes.jpg": b"Shopping list: milk, eggs, bread.\n" * 20,
        "page.html": b"<!doctype html><html><head><title>x</title></head><body><img src=a.jpg></body></html>",
        "1x1.png": Image.new("RGB", (1, 1), (200, 30, 30)),
        "transparent_rgba.png": Image.new("RGBA", (600, 800), (0, 0, 0, 0)),
        "transparent_la.png": Image.new("LA", (600, 800), (0, 0)),
        "cmyk.jpg": _jpeg(up.convert("CMYK")),
        "grey8.png": up.convert("L"),
        "grey16.png": Image.fromarray(cv2.cvtColor(front, cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257),
        "exif6.jpg": _jpeg(up.transpose(_STORED_ROTATION[6]), exif=_exif(6)),
        "exif8.jpg": _jpeg(up.transpose(_STORED_ROTATION[8]), exif=_exif(8)),
        "exif6_side.jpg": _jpeg(Image.fromarray(side).transpose(_STORED_ROTATION[6]), exif=_exif(6)),
        "sideways.jpg": _jpeg(up.transpose(_STORED_ROTATION[6])),
        "empty_room.jpg": _jpeg(np.clip(background(rng), 0, 255).astype(np.uint8)),
        "cartoon_shapes.png": cartoon_shapes(),
        "cartoon_house.png": cartoon_house(),
        "cartoon_smiley.png": cartoon_smiley(),
        "two_people.jpg": _jpeg(
            compose_photo([masks[0], masks[0]], rng, hw=(800, 1200), body_frac=0.8, centers=[0.27, 0.73])
        ),
    }
    files["page.png"] = files["page.html"]
    files["padded.jpg"] = files["front.jpg"] + bytes(int(1.2 * 2**20) - len(files["front.jpg"]))
    paths = {}
    for name, content in files.items():
        paths[name] = str(d / name)
        if isinstance(content, bytes):
            (d / name).write_bytes(content)
        else:
            _save(d / name, content)
    paths.update(_special_inputs(d, front))
    return paths


def _special_inputs(d: Path, front: np.ndarray) -> dict[str, str]:
    """The files that take more than one save: 16-bit RGB (OpenCV: PIL has no such mode), 16-bit
    big-endian grey, the alpha-only person, the GIFs, the bomb."""
    cv2.imwrite(str(d / "rgb16.png"), front[..., ::-1].astype(np.uint16) * 257)  # PIL cannot write it
    grey = cv2.cvtColor(front, cv2.COLOR_RGB2GRAY).astype(">u2") * 257
    Image.frombuffer("I;16B", grey.shape[::-1], grey.tobytes(), "raw", "I;16B", 0, 1).save(d / "grey16b.tiff")
    person = _person_alpha(front)
    Image.fromarray(np.dstack([np.zeros_like(person), person]), "LA").save(d / "alpha_person_la.png")
    frames = [Image.fromarray(front), Image.new("RGB", (600, 800), (90, 90, 90))]
    frames[0].save(d / "animated.gif", save_all=True, append_images=frames[1:], duration=300, loop=0)
    spin = [Image.new("P", (64, 64), i) for i in range(4)]
    spin[0].save(d / "spinner.gif", save_all=True, append_images=spin[1:], duration=100, loop=0)
    bomb_png(d / "bomb.png")
    names = ("rgb16.png", "grey16b.tiff", "alpha_person_la.png", "animated.gif", "spinner.gif", "bomb.png")
    return {n: str(d / n) for n in names}


def _person_alpha(front: np.ndarray) -> np.ndarray:
    """The person's outline in the front photo (from the same segmentation the page uses)."""
    return photo.person_mask(photo.get_segmenter()(front))


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def handler():
    from demo.backend import LocalBackend
    from demo.handler import DemoHandler

    return DemoHandler(LocalBackend())


@pytest.fixture(scope="module")
def body():
    """Front and side photos of one synthetic body (rendered once)."""
    from bodyshape.body_model import get_body_model
    from demo.synthetic import compose_photo, render_masks

    masks = render_masks(get_body_model().sample_shapes(4, seed=5)[2])
    rng = np.random.default_rng(11)
    return compose_photo(masks[0], rng), compose_photo(masks[1], rng), masks


@pytest.fixture(scope="module")
def inputs(body, tmp_path_factory) -> dict[str, str]:
    front, side, masks = body
    return make_inputs(tmp_path_factory.mktemp("bad_input"), front, side, masks, np.random.default_rng(12))


@pytest.fixture(scope="module")
def reference(handler, inputs):
    """name -> (front, side) silhouette previews of that front photo with the good side photo.

    The first call (the plain pair) is also a check that the good pair works at all.
    """
    seen: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def get(name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in seen:
            r = handler.run(inputs[name], inputs["side.png"], GOOD_HEIGHT_CM, "cm", {})
            assert isinstance(r, Reconstruction) and r.figure is not None, (name, r.status)
            seen[name] = r.front_preview, r.side_preview
        return seen[name]

    get("front.png")
    return get


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 127, b > 127
    return float((a & b).sum() / max((a | b).sum(), 1))


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


# ----------------------------------------------------------------------------- the table
@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_table(name, handler, inputs, reference, monkeypatch):
    case = CASES[name]
    if case.max_bytes is not None:
        monkeypatch.setattr(photo, "MAX_BYTES", case.max_bytes)
    front, side = (inputs[f] if f else None for f in (case.front, case.side))

    rss0, t0 = _max_rss_mb(), time.perf_counter()
    r = handler.run(front, side, case.height, "cm", {})  # never raises: an exception fails the case
    elapsed, grown = time.perf_counter() - t0, _max_rss_mb() - rss0

    assert "Traceback" not in r.status and "Something went wrong" not in r.status, r.status
    assert elapsed < CASE_TIME_LIMIT_S, f"{name}: took {elapsed:.0f} s"
    assert grown < CASE_MEMORY_LIMIT_MB, f"{name}: peak memory grew by {grown:.0f} MB"
    if case.expect is None:
        assert isinstance(r, Reconstruction) and r.status.startswith("**Done"), r.status
        assert (
            r.figure is not None
            and len(r.files) == 4
            and r.measurements["height"] == pytest.approx(GOOD_HEIGHT_CM / 100, abs=2e-3)
        )
        for view, sil, ref in zip(
            ("front", "side"), (r.front_preview, r.side_preview), reference(case.same_as), strict=True
        ):
            iou = _iou(sil, ref)
            assert iou > case.min_iou, (
                f"{name}: {view} silhouette differs from {case.same_as}'s (IoU {iou:.3f})"
            )
    else:
        assert isinstance(r, Failure), r.status
        assert re.search(case.expect, r.message), f"{name}: expected /{case.expect}/, got: {r.message}"
        assert r.status == f"**Error:** {r.message}"


@pytest.mark.slow
def test_page_still_works_after_the_table(handler, inputs, reference):
    """Runs after the table (file order): the same handler still serves a good pair."""
    r = handler.run(inputs["front.jpg"], inputs["side.png"], GOOD_HEIGHT_CM, "cm", {})
    assert isinstance(r, Reconstruction), r.status
    assert r.figure is not None and len(r.table) == len(MEASUREMENT_NAMES) and len(r.files) == 4
    assert _iou(r.front_preview, reference("front.png")[0]) > SAME_SILHOUETTE_IOU


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    """In a fresh process (low baseline): refusing the 400 MP bomb costs next to no memory.

    Decoding it would take at least 400 MB (1 byte per pixel); the in-table check above can
    only see growth beyond the test process's earlier peak (models, rembg), this one sees all.
    """
    bomb = tmp_path / "bomb.png"
    bomb_png(bomb)
    assert bomb.stat().st_size < 200_000
    code = (
        "import resource, sys\n"
        "from bodyshape import photo\n"
        "from bodyshape.errors import InputImageError\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    photo.load_photo(sys.argv[1], 'front photo')\n"
        "    print('accepted')\n"
        "except InputImageError as e:\n"
        "    print('refused:', e)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(bomb)], capture_output=True, text=True, timeout=120, check=True
    ).stdout.splitlines()
    assert out[0].startswith("refused: the front photo is too large"), out
    assert int(out[1]) < CASE_MEMORY_LIMIT_MB / 4, f"peak memory grew by {out[1]} MB"


# ----------------------------------------------------------------------------- the launched page
#: Cases of the table sent through the real page.
PAGE_CASES = ("text file renamed .jpg", "truncated JPEG (cut in half)", "20000x20000 PNG (decompression bomb)",
              "zero-byte file", "height 'nan'", "RGBA, fully transparent")  # fmt: skip
PAGE_MAX_UPLOAD_MB = 1.0


@pytest.mark.slow
def _converted(path: str, fmt: str) -> str:
    """A copy of the photo at ``path`` in another format (HEIF, AVIF, WEBP), beside it."""
    from bodyshape.photo import enable_heif

    enable_heif()
    out = Path(path).with_suffix("." + {"HEIF": "heic"}.get(fmt, fmt.lower()))
    Image.open(path).convert("RGB").save(out, fmt, quality=90)
    return str(out)


def test_bad_input_through_the_launched_page(inputs):
    """A handful of the cases through Gradio (upload, queue, preprocess=False): an API client
    gets an error (gradio_client's ``AppError``) whose message is the friendly one, no stack
    trace; uploads over the page's size limit are refused by the server; the page then still
    serves a good pair as a success."""
    import httpx
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    from demo.backend import LocalBackend
    from demo.page import serve_page

    with serve_page(LocalBackend(), max_upload_mb=PAGE_MAX_UPLOAD_MB) as page:
        client = Client(page.url, verbose=False)

        def send(front: str, side: str, height: object) -> tuple:
            return client.predict(
                handle_file(front), handle_file(side), height, "cm", api_name="/reconstruct"
            )

        for name in PAGE_CASES:
            case = CASES[name]
            with pytest.raises(AppError) as refused:
                send(inputs[case.front], inputs[case.side], case.height)
            message = refused.value.message
            assert re.search(case.expect, message) and message[0].isupper(), (name, message)
            assert "Traceback" not in message and "**" not in message, (name, message)

        # Over the page's upload limit: refused by the server itself (HTTP 413), never processed.
        too_big = b"\xff\xd8" + bytes(int(PAGE_MAX_UPLOAD_MB * 2**20) + 1000)
        r = httpx.post(
            page.url + "/gradio_api/upload", files={"files": ("big.jpg", too_big, "image/jpeg")}, timeout=60
        )
        assert r.status_code == 413, (r.status_code, r.text[:200])

        status, *_, fig, table, files = send(inputs["front.jpg"], inputs["side.png"], GOOD_HEIGHT_CM)
        assert status.startswith("**Done"), status
        assert fig is not None and len(files) == 4
        # Phone formats: an iPhone's HEIC front and an AVIF side are served like the JPEG/PNG pair.
        status, *_ = send(_converted(inputs["front.jpg"], "HEIF"), _converted(inputs["side.png"], "AVIF"), GOOD_HEIGHT_CM)
        assert status.startswith("**Done"), status
