import math

import numpy as np
import pytest

from bodyshape.measurements import MEASUREMENT_NAMES, convex_perimeter, girth, horizontal_girth, measure


def cylinder(r: float, h: float, n: int = 256, rings: int = 10) -> tuple[np.ndarray, np.ndarray]:
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    v = np.array([[r * np.cos(t), r * np.sin(t), z] for z in np.linspace(0, h, rings) for t in a])
    f = []
    for k in range(rings - 1):
        for i in range(n):
            a0, a1 = k * n + i, k * n + (i + 1) % n
            f += [(a0, a1, a1 + n), (a0, a1 + n, a0 + n)]
    return v, np.array(f)


@pytest.mark.parametrize("r", [0.05, 0.15, 0.4])
def test_cylinder_girth_matches_formula(r):
    v, f = cylinder(r, 1.0)
    assert horizontal_girth(v, f, 0.37) == pytest.approx(2 * math.pi * r, rel=0.01)
    # a tilted plane cuts an ellipse: perimeter larger than the circle
    assert girth(v, f, np.array([0, 0, 0.5]), np.array([0, 0.3, 1.0])) > 2 * math.pi * r


def test_convex_perimeter_bridges_concavities():
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0.5, 0.5]])
    assert convex_perimeter(square) == pytest.approx(4.0)
    assert convex_perimeter(np.zeros((2, 2))) == 0.0


@pytest.fixture(scope="module")
def body():
    from bodyshape.body_model import get_body_model

    m = get_body_model()
    return m, m.forward(m.sample_shapes(8, 11)).rest_vertices


def test_measurements_are_plausible_and_ordered(body):
    _, verts = body
    for v in verts:
        m = measure(v)
        assert set(m) == set(MEASUREMENT_NAMES)
        assert 1.3 < m["height"] < 2.1
        assert 0.6 < m["chest"] < 1.5 and 0.5 < m["waist"] < 1.5 and 0.7 < m["hip"] < 1.6
        assert m["thigh"] < m["hip"] and m["upper_arm"] < m["thigh"] and m["neck"] < m["waist"]
        assert 0.38 < m["inseam"] / m["height"] < 0.52
        assert 0.3 < m["shoulder"] < 0.6 and 0.4 < m["arm_length"] < 0.75


def test_measurements_scale_with_the_mesh(body):
    _, verts = body
    a, b = measure(verts[0]), measure(verts[0] * 1.1 + np.array([0.2, -0.1, 0.3]))
    for k in MEASUREMENT_NAMES:
        assert b[k] == pytest.approx(1.1 * a[k], rel=0.01), k


def test_height_and_waist_agree_with_anny_anthropometry(body):
    import torch
    from anny.anthropometry import Anthropometry

    m, verts = body
    anny_m = Anthropometry(m.anny)(torch.as_tensor(verts, dtype=m.anny.dtype))
    for i, v in enumerate(verts):
        ours = measure(v)
        assert ours["height"] == pytest.approx(float(anny_m["height"][i]), abs=1e-4)
        # anny sums the polyline through its (non-planar) waist loop, which follows the navel
        # dip; our tape is a horizontal convex cut at the loop's mean height: within 2%
        assert ours["waist"] == pytest.approx(float(anny_m["waist_circumference"][i]), rel=0.02)


def test_vectorised_sections_equal_single_sections():
    from bodyshape.measurements import horizontal_girths

    v, f = cylinder(0.2, 1.0)
    v = v * np.array([1.0, 0.6, 1.0])  # an elliptic cylinder
    levels = np.array([0.05, 0.33, 0.5, 0.95, 2.0])  # the last misses the mesh
    single = [horizontal_girth(v, f, z) for z in levels]
    np.testing.assert_allclose(horizontal_girths(v, f, levels), single, rtol=1e-9)
    assert single[-1] == 0.0
