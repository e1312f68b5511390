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


def test_trunk_levels_follow_iso_on_the_samplers_bodies():
    """On 60 bodies of the training sampler (men and women; the first 60 that
    ``python -m training.landmark_levels`` examines): the natural waist lies between the iliac
    crest and the lowest rib as ANSUR II places them, the underbust lies above the waist, and the
    back waist length runs down the back (definitions version 2: before it, 17% of women had the
    underbust at or below the waist and one man's waist point sat on his belly, 76 cm of tape)."""
    from bodyshape.body_model import get_body_model
    from bodyshape.measurements import WAIST_BAND, get_measurer

    model, mm = get_body_model(), get_measurer()
    shapes = model.sample_shapes(300, 123)[:60]
    assert 10 < (shapes[:, 0] >= 0.5).sum() < 50  # both sexes
    for v in model.forward(shapes).rest_vertices.astype(np.float64):
        u = np.ptp(v[:, 2]) / 1.7
        j, lv = mm.joints(v), mm.levels(v)
        s4, s2 = j["spine04"][2], j["spine02"][2]
        crest, rib = (s4 + f * (s2 - s4) for f in WAIST_BAND)
        assert crest - 1e-9 <= lv["waist"] <= rib + 1e-9
        assert lv["waist"] + 0.02 * u <= lv["underbust"] + 1e-9 and lv["underbust"] < lv["bust"] - 0.015 * u
        assert 0.08 * u < lv["bust"] - lv["waist"] < 0.25 * u
        m = measure(v)
        assert 0.28 * u < m["back_waist_length"] < 0.6 * u


def test_chest_is_taken_at_the_nipples_and_moves_smoothly_with_the_shape():
    """Definitions version 3. On the sampler's women the bust-point vertices are the most forward
    point of the chest (within 3 mm), as ISO's bust point is; and on every body a small step of
    the shape moves the chest girth by a little, not by a jump. The version-2 level (each mesh's
    most forward chest point) jumped between the pectorals and the belly on flat chests: on
    bodies of the evaluation's repeatability split, the same person's chest moved by 7 cm
    between two captures a few millimetres apart."""
    from bodyshape.body_model import get_body_model
    from bodyshape.measurements import BUST_BAND, WAIST_BAND, get_measurer

    model, mm = get_body_model(), get_measurer()
    left, right = mm.bust_points
    shapes = model.sample_shapes(300, 123)[:60]
    verts = model.forward(shapes).rest_vertices.astype(np.float64)
    for s, v in zip(shapes, verts, strict=True):
        assert v[left, 0] > 0.02 and v[right, 0] == pytest.approx(-v[left, 0], abs=1e-3)  # a pair, off the mid-line
        if s[0] > 0.6:
            j, u = mm.joints(v), np.ptp(v[:, 2]) / 1.7
            rib = j["spine04"][2] + WAIST_BAND[1] * (j["spine02"][2] - j["spine04"][2])
            shoulder = 0.5 * (j["upperarm01.L"][2] + j["upperarm01.R"][2])
            lo, hi = (rib + f * (shoulder - rib) for f in BUST_BAND)
            t = v[mm.idx_torso]
            band = t[(t[:, 2] > lo) & (t[:, 2] < hi)]
            assert v[left, 1] - band[:, 1].min() < 0.003 * u
    # Continuity: the chest along straight paths (40 steps) between 10 pairs of the sampler's men.
    # Version 2 jumped by 18-40 mm in one step on 5 of these paths (its median step: 2 mm).
    c = MEASUREMENT_NAMES.index("chest")
    men = shapes[shapes[:, 0] < 0.5][:11]
    t = np.linspace(0, 1, 41)[:, None]
    for k in range(10):
        chest = mm.batch(model.forward((1 - t) * men[k] + t * men[k + 1]).rest_vertices)[:, c]
        steps = np.abs(np.diff(chest))
        assert steps.max() <= 5 * np.median(steps) + 0.002, f"path {k}: a jump of {steps.max() * 1000:.0f} mm"


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


def test_waist_band_is_where_the_survey_puts_crest_and_rib(tmp_path):
    """WAIST_BAND is derived, not chosen: the survey's iliac crest and lowest rib (committed summary),
    mapped onto Anny's spine04 -> spine02 through the trunk (crotch to acromion) of sampler bodies;
    and the summary file is what write_survey_levels makes of per-person rows."""
    import csv

    from bodyshape.measurements import WAIST_BAND
    from bodyshape.population import SURVEY_PEOPLE_FILES
    from training.landmark_levels import (
        SURVEY_LEVELS,
        anny_levels,
        read_survey_levels,
        write_survey_levels,
    )

    survey = read_survey_levels()
    lv, gender = anny_levels(60, 123)
    for k, landmark in enumerate(("iliac_crest", "lowest_rib")):
        mapped = []
        for sex, sel in (("male", gender < 0.5), ("female", gender >= 0.5)):
            s4, s2 = lv["spine04"][sel].mean(), lv["spine02"][sel].mean()
            mapped.append((survey[sex, landmark] - s4) / (s2 - s4))
        assert abs(np.mean(mapped) - WAIST_BAND[k]) < 0.03, (landmark, mapped)
    # two made-up people per sex: crotch 800, acromion 1400 mm; each landmark at a known fraction
    for name in SURVEY_PEOPLE_FILES.values():
        cols = ["crotchheight", "acromialheight", *SURVEY_LEVELS]
        with open(tmp_path / name, "w", newline="", encoding="latin-1") as f:
            w = csv.writer(f)
            w.writerow(cols)
            w.writerow([800, 1400, *(800 + 600 * 0.1 * (i + 1) for i in range(len(SURVEY_LEVELS)))])
            w.writerow([800, 1400, *(800 + 600 * 0.1 * (i + 2) for i in range(len(SURVEY_LEVELS)))])
    got = read_survey_levels(write_survey_levels(tmp_path, tmp_path / "levels.csv"))
    for i, landmark in enumerate(SURVEY_LEVELS.values()):
        assert got["female", landmark] == pytest.approx(0.1 * (i + 1.5))
