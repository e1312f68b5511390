import math

import numpy as np
import pytest

from bodyshape.errors import BodyShapeError
from bodyshape.render import Camera, project, render_silhouette
from bodyshape.silhouette import (
    BODY_HEIGHT_PX,
    CANVAS_HW,
    as_canvases,
    body_pixels,
    bounding_box,
    normalize_silhouette,
    to_network_input,
)


def box_mesh(w: float, d: float, h: float) -> tuple[np.ndarray, np.ndarray]:
    """Closed box centred on x/y, z from 0 to h, outward-facing triangles."""
    x, y = w / 2, d / 2
    v = np.array([[-x, -y, 0], [x, -y, 0], [x, y, 0], [-x, y, 0], [-x, -y, h], [x, -y, h], [x, y, h], [-x, y, h]], float)
    quads = [(0, 3, 2, 1), (4, 5, 6, 7), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7)]
    f = [(a, b, c) for a, b, c, _ in quads] + [(a, c, d) for a, _, c, d in quads]
    return v, np.array(f)


def test_front_mask_of_a_box_has_the_expected_extent():
    v, f = box_mesh(0.5, 0.3, 1.8)
    mask = render_silhouette(v, f, "front", Camera(), height_px=180)
    top, bottom, left, right = bounding_box(mask > 0)
    assert abs((bottom - top) - 180) <= 1
    assert abs((right - left) - 50) <= 2  # 0.5 m wide at 100 px/m
    assert (mask[top + 2 : bottom - 2, left + 2 : right - 2] > 0).all()  # filled, no pinholes


def test_side_view_shows_the_depth():
    v, f = box_mesh(0.5, 0.3, 1.8)
    mask = render_silhouette(v, f, "side", Camera(), height_px=180)
    top, bottom, left, right = bounding_box(mask > 0)
    assert abs((right - left) - 30) <= 2


def test_perspective_makes_the_near_face_larger():
    v, f = box_mesh(0.5, 0.5, 1.0)
    p = project(v, "front", Camera(distance=2.0, height=0.5))
    near, far = p[[0, 1]], p[[3, 2]]  # y=-d/2 is nearer the camera
    assert abs(near[1, 0] - near[0, 0]) > abs(far[1, 0] - far[0, 0])
    with pytest.raises(BodyShapeError):
        project(v, "front", Camera(distance=0.1))
    assert math.isinf(Camera().distance)


def test_normalisation_is_idempotent_and_keeps_aspect():
    rng = np.random.default_rng(0)
    for _ in range(20):
        img = np.zeros((400, 300), np.uint8)
        h, w = rng.integers(100, 380), rng.integers(20, 150)
        y, x = rng.integers(0, 400 - h), rng.integers(0, 300 - w)
        img[y : y + h, x : x + w] = 255
        img[y + h // 3, x + w // 2 : x + w] = 0  # some structure
        n = normalize_silhouette(img)
        assert n.shape == CANVAS_HW and n.dtype == np.uint8
        np.testing.assert_array_equal(normalize_silhouette(n), n)
        t, b, lft, r = bounding_box(n > 0)
        width = n[t + (b - t) * 3 // 4].sum() / 255  # a full row's coverage: the width, sub-pixel
        if b - t == BODY_HEIGHT_PX:  # height-limited: the aspect is kept (not rounded to pixels)
            assert abs(width - w * BODY_HEIGHT_PX / h) <= 0.1
        else:  # too wide: scaled to fit the width
            assert abs(width - (CANVAS_HW[1] - 2)) <= 0.1
        # centred
        assert abs((t + b) / 2 - CANVAS_HW[0] / 2) <= 1 and abs((lft + r) / 2 - CANVAS_HW[1] / 2) <= 1


def test_normalisation_keeps_sub_pixel_edges():
    """The canvas holds area coverage: a body moved or widened by a fraction of a canvas pixel
    changes the canvas by that fraction (a 0/1 canvas would round it away), its 0/1 body is the
    pixels at least half covered, and the body is exactly BODY_HEIGHT_PX rows tall."""
    src_h, ratio = 560, 560 / BODY_HEIGHT_PX  # 5 source pixels per canvas pixel

    def canvas(width_src: int) -> np.ndarray:
        img = np.zeros((600, 400), np.uint8)
        img[20 : 20 + src_h, 100 : 100 + width_src] = 255
        return normalize_silhouette(img)

    widths = []
    for w in range(150, 156):  # 150..155 source px: 30.0..31.0 canvas px
        n = canvas(w)
        rows = np.flatnonzero(n.any(1))
        assert len(rows) == BODY_HEIGHT_PX and len(np.flatnonzero(body_pixels(n).any(1))) == BODY_HEIGHT_PX
        widths.append(n[rows[50]].sum() / 255)
        if w % 5:  # not a whole number of canvas pixels: a soft edge column
            assert set(np.unique(n)) - {0, 255}
        np.testing.assert_array_equal(body_pixels(n), n >= 128)
    np.testing.assert_allclose(np.diff(widths), 1 / ratio, atol=0.02)  # each source px counts
    assert not np.array_equal(canvas(150), canvas(151))


def test_canvases_in_and_out():
    """bool and 0/1 masks become 0/255 canvases; float masks are refused (ambiguous)."""
    m = np.zeros((2, 4, 4), bool)
    m[0, 1:3, 1:3] = True
    np.testing.assert_array_equal(as_canvases(m), m * np.uint8(255))
    np.testing.assert_array_equal(as_canvases(m.astype(np.uint8)), m * np.uint8(255))
    np.testing.assert_array_equal(body_pixels(m.astype(np.uint8)), m)  # the training sets' unpacked bits
    soft = np.array([[0, 40, 255, 128]], np.uint8)
    np.testing.assert_array_equal(as_canvases(soft), soft)  # coverage kept
    np.testing.assert_array_equal(to_network_input(soft), [[0, 0, 1, 1]])
    with pytest.raises(BodyShapeError, match="uint8"):
        as_canvases(m.astype(np.float32))


def test_normalisation_rejects_empty_masks():
    with pytest.raises(BodyShapeError, match="empty"):
        normalize_silhouette(np.zeros((50, 50), np.uint8))
