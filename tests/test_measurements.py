import math

import numpy as np
import pytest

from bodyshape.measurements import (
    BY_NAME,
    MEASUREMENT_NAMES,
    MEASUREMENTS,
    convex_perimeter,
    girth,
    horizontal_girth,
    measure,
    tape_length,
)


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
    model, verts = body
    gender = model.sample_shapes(8, 11)[:, 0]  # 0 = male, 1 = female
    for v, g in zip(verts, gender, strict=True):
        m = measure(v)
        assert set(m) == set(MEASUREMENT_NAMES)
        assert 1.3 < m["height"] < 2.1
        assert 0.6 < m["chest"] < 1.5 and 0.5 < m["waist"] < 1.5 and 0.7 < m["hip"] < 1.6
        assert m["thigh"] < m["hip"] and m["upper_arm"] < m["thigh"] and m["neck"] < m["waist"]
        assert 0.38 < m["inseam"] / m["height"] < 0.52
        assert 0.25 < m["shoulder"] < 0.55 and 0.4 < m["arm_length"] < 0.75
        assert m["hip"] > m["waist"] and m["wrist"] < m["upper_arm"]
        if g > 2 / 3:  # women: the bust is larger than the ribcage under it
            assert m["chest"] > m["underbust"]
        assert m["calf"] < m["thigh"] and m["outside_leg"] > m["inseam"]
        assert 0.1 < m["wrist"] < 0.25 and 0.25 < m["back_waist_length"] < 0.6 and 0.25 < m["across_back"] < 0.6


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
        # ours is the natural waist, the narrowest girth between ribs and pelvis; Anny's waist
        # loop runs lower, near the navel: ours is never larger (1% for the loop's dip)
        assert ours["waist"] <= 1.01 * float(anny_m["waist_circumference"][i])


def test_vectorised_sections_equal_single_sections():
    from bodyshape.measurements import horizontal_girths

    v, f = cylinder(0.2, 1.0)
    v = v * np.array([1.0, 0.6, 1.0])  # an elliptic cylinder
    levels = np.array([0.05, 0.33, 0.5, 0.95, 2.0])  # the last misses the mesh
    single = [horizontal_girth(v, f, z) for z in levels]
    np.testing.assert_allclose(horizontal_girths(v, f, levels), single, rtol=1e-9)
    assert single[-1] == 0.0


def test_tape_length_follows_the_outside_and_bridges_hollows():
    t = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    r = 0.1
    circle = np.stack([r * np.cos(t), np.zeros_like(t), r * np.sin(t)], 1)  # in the x-z plane
    top, bottom = np.array([0, 0, r]), np.array([0, 0, -r])
    # over the +x half of the circle: half its circumference
    assert tape_length(circle, top, bottom, [1.0, 0, 0]) == pytest.approx(math.pi * r, rel=1e-3)
    # a polyline with a dent: the tape bridges the dent, so it is the hull chain
    poly = np.array([[0, 0, 0], [0.1, 0, 0.1], [0.05, 0, 0.2], [0.1, 0, 0.3], [0, 0, 0.4]], float)
    expected = 2 * math.hypot(0.1, 0.1) + 0.2  # (0,0)->(0.1,0.1)->(0.1,0.3)->(0,0.4)
    assert tape_length(poly, poly[0], poly[-1], [1.0, 0, 0]) == pytest.approx(expected, rel=1e-6)
    # nothing outside the chord: the straight distance
    assert tape_length(poly, poly[0], poly[-1], [-1.0, 0, 0]) == pytest.approx(0.4)


def test_box_girth_is_its_perimeter():
    v, f = cylinder(1.0, 1.0, n=4)  # a square prism with corners on the unit circle
    assert horizontal_girth(v, f, 0.5) == pytest.approx(4 * math.sqrt(2), rel=1e-6)


def test_every_measurement_has_a_label_an_iso_term_and_a_how_to():
    doc = __import__("bodyshape.measurements", fromlist=["x"]).__doc__
    assert [m.name for m in MEASUREMENTS] == list(MEASUREMENT_NAMES)
    assert MEASUREMENT_NAMES[:10] == ("height", "chest", "waist", "hip", "neck", "thigh", "upper_arm",
                                      "inseam", "shoulder", "arm_length")  # stored column order
    for m in MEASUREMENTS:
        assert m.label and m.iso_term and m.how_to_measure.endswith(".")
        assert f"\n{m.name} " in doc, f"{m.name} missing from the module's definition table"
    assert BY_NAME["neck"].iso_term == "neck base girth"


def test_landmarks_sit_where_anatomy_puts_them(body):
    from bodyshape.measurements import get_measurer

    _, verts = body
    mm = get_measurer()
    for v in verts.astype(np.float64):
        j = mm.joints(v)
        u = np.ptp(v[:, 2]) / 1.7
        for side in ("L", "R"):
            joint = j[f"upperarm01.{side}"]
            acr = mm._acromion(v, side, joint, u)
            # above the shoulder joint, lateral of it, at most 8 cm away
            assert acr[2] > joint[2] and abs(acr[0]) > abs(joint[0]) and np.linalg.norm(acr - joint) < 0.08 * u
        c7, notch = v[mm.cervicale], v[mm.jugular]
        assert c7[1] > notch[1] and c7[2] > notch[2]  # C7 at the back, higher than the notch
        assert abs(c7[0]) < 1e-3 and abs(notch[0]) < 1e-3
        # the neck base girth is larger than a girth higher up the neck
        m = measure(v)
        up = np.array([0.0, 0.0, 1.0])
        assert m["neck"] > girth(v, mm.faces_neck, c7 + 0.02 * u * up, up)
        # the trunk girths' levels, bottom to top
        lv = mm.levels(v)
        assert lv["crotch"] < lv["hip"] < lv["waist"] < lv["bust"] < c7[2] and lv["underbust"] < lv["bust"]
        assert abs(lv["mid_x"]) < 0.01
        assert m["inseam"] == pytest.approx(lv["crotch"] - v[:, 2].min())


def test_measurer_is_built_in_its_constructor_and_shared():
    import threading

    from bodyshape.measurements import Measurer, get_measurer

    assert "joint_regressor" in vars(get_measurer())  # a plain attribute, not built lazily
    assert not any(isinstance(getattr(Measurer, k, None), property) for k in vars(Measurer))
    got = []
    threads = [threading.Thread(target=lambda: got.append(get_measurer())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(m is got[0] for m in got)


def test_readme_defines_every_measurement_and_nothing_else():
    """The README's definition table lists exactly the measurements the code makes."""
    import re

    from bodyshape.measurements import BY_NAME, MEASUREMENT_NAMES
    from bodyshape.paths import REPO_DIR

    readme = (REPO_DIR / "README.md").read_text()
    table = readme.split("| name | ISO 8559-1 term | on the mesh |", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^\| (\w+) \| ([^|]+) \|", table, re.M)
    assert [r[0] for r in rows] == list(MEASUREMENT_NAMES)
    for name, term in rows:  # the README's ISO term starts like the code's
        assert term.split()[0] == BY_NAME[name].iso_term.split()[0], (name, term)
