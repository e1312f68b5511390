"""Capture feedback (bodyshape.capture): every check passes a good synthetic capture and names a
bad one, both rendered from the body model in known poses; the thresholds hold on fresh renders;
the messages and the page's guide say the same thing; the checks are cheap.
"""

import re
import time

import numpy as np
import pytest

from bodyshape import capture
from bodyshape.assets import have_u2netp
from bodyshape.body_model import PoseOffsets, get_body_model

#: Bodies of the good/bad captures (one sample, never used by the derivation: seed 9100).
SEED = 4711
N_BODIES = 3


def _both(**change) -> dict[str, PoseOffsets]:
    return {view: PoseOffsets(**change) for view in ("front", "side")}


#: check -> bad captures that must fail it (and how the message reads), as (render args, regex).
BAD = {
    "front_arms": [(dict(change="arm_abduction", value=-32), "arms are too close"),
                   (dict(change="arm_abduction", value=35), "arms are raised too far")],
    "front_feet": [(dict(change="leg_spread", value=-20), "feet are too close together"),
                   (dict(change="leg_spread", value=22), "feet are too far apart")],
    "front_tilt": [(dict(change="roll", value=12), "looks tilted")],
    "front_turned": [(dict(change="yaw", value=35), "looks turned away"),
                     (dict(change="yaw", value=-35), "looks turned away")],
    "side_turned": [(dict(change="yaw", value=60), "not fully side-on")],
    "side_arms": [(dict(change="arm_swing", value=40), "arms are in front of or behind")],
    "side_lean": [(dict(change="torso_lean", value=20), "you lean forwards"),
                  (dict(change="torso_lean", value=-16), "you lean backwards")],
}  # fmt: skip
#: Fraction of fresh bad captures that must warn (test_thresholds_hold_on_fresh_renders): 0.8,
#: except front_turned, which catches about 3 in 4 bodies turned by 30-40 degrees (docs/capture.md).
MIN_DETECTION = {"front_turned": 0.5}


@pytest.fixture(scope="module")
def shapes():
    return get_body_model().sample_shapes(N_BODIES, seed=SEED)


def _render(shapes, change=None, value=0.0, seed=SEED):
    from demo.capture_thresholds import render

    return render(get_body_model(), shapes, seed, change, value)


def _failed(checks) -> set[str]:
    return {c.name for c in checks if not c.passed}


@pytest.mark.slow
def test_good_capture_passes_every_check(shapes):
    front, side = _render(shapes)
    for f, s in zip(front, side, strict=True):
        checks = capture.check_masks(f, s)
        assert {c.name for c in checks} == set(capture.SPECS) - {"framing"}
        # The thresholds are the 0.5th / 99.5th percentiles of training-like captures, so about
        # 1% of them warn: one of these bodies holds an arm at 57.8 deg against 57.5 (it was
        # 57.46 with 0/1 canvases). A good capture may only graze a bound, by under 2%.
        for c in checks:
            if not c.passed:
                bound = c.high if c.high is not None and c.value > c.high else c.low
                assert abs(c.value - bound) < 0.02 * abs(bound), (c.name, c.value, bound)
        assert all(c.message == "" and not c.marks for c in checks if c.passed)


@pytest.mark.slow
@pytest.mark.parametrize("name,args,pattern", [(n, a, p) for n, cases in BAD.items() for a, p in cases])
def test_bad_capture_is_named(shapes, name, args, pattern):
    front, side = _render(shapes, **args)
    for f, s in zip(front, side, strict=True):
        checks = {c.name: c for c in capture.check_silhouettes(f, s)}
        bad = checks[name]
        assert not bad.passed, (name, args, bad.value, bad.low, bad.high)
        assert re.search(pattern, bad.message), bad.message
        assert bad.message.endswith(capture.GUIDE[name] + ".")
        assert bad.marks and all(m.view in ("front", "side") for m in bad.marks)


def _person(sign: float) -> np.ndarray:
    """A body at an end of Anny's torso ranges: sign +1 wide and shallow, -1 narrow and deep."""
    from bodyshape.body_model import SHAPE_LABELS

    shape = get_body_model().sample_shapes(1, seed=SEED)[0].copy()
    shape[SHAPE_LABELS.index("weight")] = 0.5 - 0.5 * sign
    shape[SHAPE_LABELS.index("torso-scale-horiz-incr")] = sign
    for label in ("torso-scale-depth-incr", "stomach-pregnant-incr", "buttocks-volume-incr", "hip-scale-depth-incr"):
        shape[SHAPE_LABELS.index(label)] = -sign
    return shape


@pytest.mark.slow
def test_front_and_side_of_different_people_are_named():
    """A gross mismatch only (docs/capture.md: the check catches few random pairs)."""
    wide, deep = _person(1.0), _person(-1.0)
    front, side = _render(np.stack([wide, deep]))
    checks = {c.name: c for c in capture.check_silhouettes(front[1], side[0])}  # narrow front, shallow side
    assert not checks["same_person"].passed, checks["same_person"].value
    assert "different people" in checks["same_person"].message
    assert len(checks["same_person"].marks) == 2  # the torso in both views


def test_an_object_merged_into_the_side_outline_is_named(shapes):
    """The evaluation's repeatability split has one capture in which rembg merged an object behind
    the person into the side outline, from the back of the head down the back (docs/capture.md);
    the same block painted onto a good side silhouette fails side_outline, the clean one passes."""
    _, side = _render(shapes)
    for sil in side:
        clean = capture.check_segmentation(sil)
        assert clean.passed, clean.value
        b = capture._Body(sil)
        head_cols = np.flatnonzero(b.rows(*capture.SIDE_HEAD_ROWS).any(0))
        faces_right = b.centroid_x(*capture.TOE_ROWS) >= b.centroid_x(*capture.SHIN_ROWS)
        depth = round(0.04 * b.h)
        # a block behind the nape and down the back, reaching further back than the head (as there)
        cols = slice(head_cols.min() - depth, head_cols.min() + 3) if faces_right else slice(head_cols.max() - 2, head_cols.max() + depth + 1)
        merged = sil.copy()
        merged[round(b.y(capture.SIDE_HEAD_ROWS[1])) + 1 : round(b.y(0.45)), cols] = 255
        check = capture.check_segmentation(merged)
        assert not check.passed and check.value >= 1.0, check.value
        assert "cut out as part of you" in check.message and check.message.startswith("Side photo: ")
        assert [m.view for m in check.marks] == ["side"]


def test_framing_check_on_sizes():
    sil = np.zeros((128, 96), np.uint8)
    sil[8:120, 30:66] = 255
    good = capture.check_framing((700.0, 690.0), ((800, 600), (800, 600)), (sil, sil))
    assert good.passed and good.value == pytest.approx(capture.REMBG_INPUT_PX * 690 / 800)
    # The person fills a third of the frame: rembg sees them about 107 px tall.
    small = capture.check_framing((700.0, 270.0), ((800, 600), (800, 600)), (sil, sil))
    assert not small.passed and small.marks[0].view == "side" and "too small" in small.message
    # A small, low-resolution photo: a 120 px tall person (rembg would upsample it).
    low = capture.check_framing((120.0, 700.0), ((200, 160), (800, 600)), (sil, sil))
    assert not low.passed and low.value == pytest.approx(120) and low.marks[0].view == "front"


@pytest.mark.slow
@pytest.mark.skipif(not have_u2netp(), reason="u2netp.onnx missing: run `bodyshape setup`")
def test_framing_through_the_photo_path(shapes):
    """Photos made from a render: the person at 82% of the frame passes, at 34% it warns."""
    from bodyshape.photo import photo_to_silhouette
    from demo.synthetic import compose_photo, render_masks

    masks = render_masks(shapes[0])
    for frac, ok in ((0.82, True), (0.34, False)):
        rng = np.random.default_rng(3)
        sils = [photo_to_silhouette(compose_photo(m, rng, body_frac=frac), v) for m, v in zip(masks, ("front", "side"),
                                                                                             strict=True)]  # fmt: skip
        framing = {c.name: c for c in capture.check_capture(*sils)}["framing"]
        assert framing.passed == ok, (frac, framing.value)


@pytest.mark.slow
def test_thresholds_hold_on_fresh_renders():
    """The derivation's promise on bodies it never saw: training-like captures rarely warn
    (about 1% per check expected; 5% allowed on 60 bodies), far pose changes mostly do."""
    from demo.capture_thresholds import warn_rates

    model = get_body_model()
    shapes = model.sample_shapes(60, seed=SEED + 1)
    front, side = _render(shapes, seed=SEED + 1)
    rates = warn_rates(front, side)
    # front_feet: 4.5% of training captures have legs touching all the way down (docs/capture.md).
    assert all(r <= (0.1 if name == "front_feet" else 0.05) for name, r in rates.items()), rates
    assert warn_rates(front, np.roll(side, 7, axis=0))["same_person"] > rates["same_person"]
    for name, cases in BAD.items():
        for args, _ in cases:
            f, s = _render(shapes[:20], seed=SEED + 2, **args)
            assert warn_rates(f, s)[name] >= MIN_DETECTION.get(name, 0.8), (name, args)


def test_messages_and_the_page_guide_agree():
    from demo.page import CAPTURE_TEXT

    text = " ".join(CAPTURE_TEXT.split())
    for name, spec in capture.SPECS.items():
        assert capture.GUIDE[name].lower() in text.lower(), name  # the page shows each instruction
        value = (spec.low - 1) if spec.low is not None else spec.high + 1
        message = spec.message(value)
        assert message.endswith(f"; {capture.GUIDE[name]}."), message
        assert message.startswith(("Front photo: ", "Side photo: ", "Front and side photos: "))


def test_marks_are_drawn_where_the_problem_is(shapes):
    front, side = _render(shapes[:1], "leg_spread", -12)
    checks = capture.check_silhouettes(front[0], side[0])
    img = capture.marked_preview(front[0], "front", checks, 3)
    assert img.shape == (384, 288, 3)
    red = (img == capture.MARK_RGB).all(2)
    ys, _ = np.nonzero(red)
    assert red.any() and ys.min() > 0.45 * 384  # the legs' box, in the lower half
    plain = capture.marked_preview(side[0], "side", [c for c in checks if c.view != "side" or c.passed], 3)
    assert not (plain == capture.MARK_RGB).all(2).any()
    np.testing.assert_array_equal(plain[::3, ::3, 1], side[0])  # the silhouette itself, unchanged
    front, side = _render(shapes[:1], "yaw", 35)
    checks = capture.check_silhouettes(front[0], side[0])
    red = (capture.marked_preview(front[0], "front", checks, 3) == capture.MARK_RGB).all(2)
    ys, xs = np.nonzero(red)
    body_xs = np.flatnonzero((front[0] > 0).any(0)) * 3
    assert ys.min() > 0.7 * 384 and xs.min() > body_xs.min()  # front_turned: a box around the feet only


def test_checks_are_cheap(shapes):
    front, side = _render(shapes[:1])
    capture.check_silhouettes(front[0], side[0])
    t0 = time.perf_counter()
    for _ in range(20):
        capture.check_silhouettes(front[0], side[0])
    per_pair_ms = (time.perf_counter() - t0) / 20 * 1000
    print(f"capture checks: {per_pair_ms:.2f} ms per pair")
    assert per_pair_ms < 20
