"""Evaluation splits that leave the training distribution (training/splits.py) and their metrics."""

from __future__ import annotations

import numpy as np
import pytest

from bodyshape.assets import have_u2netp
from bodyshape.measurements import MEASUREMENT_NAMES
from bodyshape.silhouette import normalize_silhouette
from training.evaluate import split_errors
from training.splits import MAX_DEFORMATION_M, OFF_MODEL, STANCE, load_split, smooth_deformation


def test_split_errors_report_bias_p90_and_repeatability():
    m = len(MEASUREMENT_NAMES)
    truth = np.ones((4, m))
    pred = truth + np.array([0.01, 0.01, 0.03, -0.01])[:, None]  # metres
    person = np.array([0, 0, 1, 1])
    e = split_errors(pred, truth, person)["chest"]
    assert e["mae"] == pytest.approx(15.0) and e["bias"] == pytest.approx(10.0)
    assert e["p90"] == pytest.approx(np.percentile([10, 10, 30, 10], 90))
    assert e["repeat_sd"] == pytest.approx(np.mean([0.0, np.std([30, -10], ddof=1)]))
    assert e["repeat_sd_max"] == pytest.approx(np.std([30, -10], ddof=1)) and e["repeat_sd_median"] == pytest.approx(e["repeat_sd"])
    assert "repeat_sd" not in split_errors(pred, truth, np.arange(4))["chest"]


def test_off_model_deformation_is_smooth_bounded_and_leaves_the_arms():
    from bodyshape.body_model import get_body_model

    model = get_body_model()
    rest = model.forward(model.sample_shapes(1, 3)).rest_vertices[0]
    d = smooth_deformation(model, rest, np.random.default_rng(0))
    size = np.linalg.norm(d, axis=1)
    assert size.max() <= MAX_DEFORMATION_M + 1e-6 and size.max() > 0.005
    arm = np.array([model.bone_labels[b].startswith(("lowerarm", "wrist")) for b in model.dominant_bone])
    assert size[arm].max() < 1e-4
    edges = np.concatenate([model.faces[:, [0, 1]], model.faces[:, [1, 2]]])
    length = np.linalg.norm(rest[edges[:, 0]] - rest[edges[:, 1]], axis=1)
    slope = np.abs(size[edges[:, 0]] - size[edges[:, 1]]) / np.maximum(length, 1e-6)
    # smooth: a bump of 3 cm over >= 6 cm changes by at most 0.3 mm per mm, even where bumps add
    assert slope.max() < 0.6


@pytest.mark.parametrize("name", [STANCE, OFF_MODEL])
def test_rendered_split_is_deterministic_and_cached(name, tmp_path):
    a = load_split(name, tmp_path, n=3)
    files = list(tmp_path.glob(f"{name}_*.npz"))
    assert len(files) == 1
    b = load_split(name, tmp_path, n=3)  # from the cache
    c = load_split(name, tmp_path / "again", n=3)  # made again from the seed
    for x in (b, c):
        np.testing.assert_array_equal(a.front, x.front)
        np.testing.assert_array_equal(a.side, x.side)
        np.testing.assert_allclose(a.truth, x.truth)
    assert a.front.shape[0] == 3 and a.front.dtype == np.uint8
    # coverage canvases, as normalised (soft edges kept)
    np.testing.assert_array_equal(normalize_silhouette(a.front[0]), a.front[0])
    assert set(np.unique(a.front)) - {0, 255}
    h = MEASUREMENT_NAMES.index("height")
    np.testing.assert_allclose(a.height, a.truth[:, h])


def test_off_model_truth_is_measured_on_the_deformed_body(tmp_path):
    from bodyshape.body_model import get_body_model
    from bodyshape.measurements import get_measurer

    split = load_split(OFF_MODEL, tmp_path, n=2)
    model = get_body_model()
    plain = get_measurer().batch(model.forward(model.sample_shapes(2, seed=1103)).rest_vertices)
    girths = [MEASUREMENT_NAMES.index(g) for g in ("chest", "waist", "hip")]
    assert np.abs(split.truth[:, girths] - plain[:, girths]).max() > 0.005


@pytest.mark.skipif(not have_u2netp(), reason="u2netp.onnx missing: run `bodyshape setup`")
def test_repeatability_split_frames_each_person_several_times(tmp_path):
    from training.splits import REFRAMES, REPEATABILITY

    split = load_split(REPEATABILITY, tmp_path, n=1)
    assert split.front.shape[0] == REFRAMES and (split.person == 0).all()
    assert len({f.tobytes() for f in split.front}) > 1  # the re-framings really differ
    assert np.ptp(split.truth, axis=0).max() == 0  # ... of one and the same body


def test_in_distribution_split_reuses_the_held_out_test_set(tmp_path):
    import dataclasses

    from training.config import DataConfig
    from training.generate import generate
    from training.splits import IN_DISTRIBUTION, test_set_config

    test = tmp_path / "test"
    generate(test_set_config(4, 1), test, workers=1, progress=False)
    split = load_split(IN_DISTRIBUTION, tmp_path / "eval", n=4, test_set=test)
    assert not (tmp_path / "eval").exists()  # nothing generated again
    assert ((split.front > 0) & (split.front < 255)).any()  # the coverage canvases the page reads
    again = load_split(IN_DISTRIBUTION, tmp_path / "eval", n=4)  # without it: made from the seed
    np.testing.assert_array_equal(split.front, again.front)
    np.testing.assert_allclose(split.truth, again.truth)
    # a test set of another seed, or of 0/1 bodies, is not the in-distribution split: ignored, the split is made
    for k, cfg in enumerate((test_set_config(4, 5), dataclasses.replace(DataConfig(), n=4, seed=1))):
        other = tmp_path / f"other{k}"
        generate(cfg, other, workers=1, progress=False)
        np.testing.assert_array_equal(load_split(IN_DISTRIBUTION, tmp_path / f"eval{k}", n=4, test_set=other).front,
                                      split.front)  # fmt: skip
        assert (tmp_path / f"eval{k}").exists()


def test_evaluate_splits_table_of_the_shipped_model(tmp_path, monkeypatch):
    """``bodyshape evaluate``'s split section: MAE / bias / P90 per girth and split, targets."""
    from bodyshape.paths import WEIGHTS_DIR
    from training import splits
    from training.evaluate import evaluate_splits, split_names, splits_markdown

    monkeypatch.setitem(splits.SPLIT_SIZES, STANCE, 3)
    monkeypatch.setitem(splits.SPLIT_SIZES, OFF_MODEL, 3)
    res = evaluate_splits(WEIGHTS_DIR / "fused.safetensors", [STANCE, OFF_MODEL], tmp_path)
    assert set(res["splits"]) == {STANCE, OFF_MODEL} and res["splits"][STANCE]["n"] == 3
    row = res["splits"][STANCE]["errors"]["hip"]
    assert row["mae"] >= abs(row["bias"]) and row["p90"] > 0
    iv = res["splits"][STANCE]["intervals"]["hip"]  # the shipped 80% intervals, judged on the split
    assert 0.0 <= iv["coverage"] <= 1.0 and 20 < iv["width"] < 200
    md = splits_markdown(res)
    assert "| stance | 3 |" in md and "| off_model | 3 |" in md and "MAE target" in md
    assert "coverage / width / corr" in md
    assert split_names("none") == [] and split_names("all")[0] == "in_distribution"
    with pytest.raises(Exception, match="unknown split"):
        split_names("stance,bogus")


@pytest.mark.skipif(not have_u2netp(), reason="u2netp.onnx missing: run `bodyshape setup`")
def test_bare_photo_split_reproduces_the_true_outline(tmp_path):
    """photo_bare: a photo of the bare body through rembg gives the body's own silhouette back."""
    from bodyshape.body_model import get_body_model
    from bodyshape.silhouette import body_pixels, normalize_silhouette
    from demo.synthetic import render_masks
    from training.splits import PHOTO_BARE, SPLIT_SEEDS

    split = load_split(PHOTO_BARE, tmp_path, n=1)
    shape = get_body_model().sample_shapes(1, seed=SPLIT_SEEDS[PHOTO_BARE])[0]
    for got, mask in zip((split.front[0], split.side[0]), render_masks(shape), strict=True):
        want, body = body_pixels(normalize_silhouette(mask)), body_pixels(got)
        iou = (want & body).sum() / (want | body).sum()
        assert iou > 0.85, iou


def test_reframing_keeps_the_room_and_clothes_and_changes_the_framing():
    """A second capture is the same person in the same room: only the framing differs."""
    import dataclasses

    from bodyshape.body_model import get_body_model
    from demo.synthetic import render_masks
    from training.splits import Reframing, reframe

    masks = render_masks(get_body_model().sample_shapes(1, seed=5)[0])
    how = Reframing(body_frac=(0.8, 0.8), center=(0.5, 0.5), drop=(0.0, 0.0), roll_deg=(0.0, 0.0),
                    brightness=(1.0, 1.0), jpeg_quality=95)  # fmt: skip
    first = reframe(masks, 11, how)
    np.testing.assert_array_equal(first[0], reframe(masks, 11, how)[0])  # scene and framing fix the photo
    smaller = reframe(masks, 11, dataclasses.replace(how, body_frac=(0.6, 0.6)))
    wall = (slice(0, 80), slice(0, 60))  # top-left corner: wall, away from the person
    for view in (0, 1):
        assert np.abs(first[view][wall].astype(int) - smaller[view][wall]).mean() < 3  # the same room
        assert not np.array_equal(first[view], smaller[view])  # ... the person framed smaller
    other_room = reframe(masks, 12, how)
    assert not np.array_equal(first[0], other_room[0])
    drawn = Reframing.draw(np.random.default_rng(0))
    assert all(0.54 <= f <= 0.9 for f in drawn.body_frac) and 60 <= drawn.jpeg_quality <= 95


def test_dress_grows_the_torso_by_the_margin_cloth_floor_draws():
    """training.cloth_floor draws the cloth margin with the function dress uses: the torso of a
    dressed mask is wider by exactly twice that margin, the legs and the head are not."""
    from training.splits import cloth_margin_px, dress

    mask = np.zeros((560, 200), np.uint8)
    mask[40:540, 80:120] = 255  # a 40 px wide column, 499 rows from top to bottom row
    seed = 5
    px = cloth_margin_px(499, np.random.default_rng(seed))
    assert 1 <= px <= round(0.015 / 1.7 * 499)
    out = dress(mask, "front", np.random.default_rng(seed))
    width = (out > 0).sum(1)
    assert width[300] == 40 + 2 * px  # the torso rows (0.19-0.60 of the height)
    assert width[500] == 40  # the legs


def test_mask_noise_floor_varies_the_noise_alone():
    """training.mask_noise_floor compares noise variants on the same renders: without noise a
    canvas is the clean render normalised, a variant's noise is drawn from the row's own seed (the
    same canvases twice), the full variant is the training noise, and "X only" switches on X alone."""
    import dataclasses

    from bodyshape.augment import NO_NOISE, MaskNoise
    from bodyshape.silhouette import normalize_silhouette
    from training.mask_noise_floor import KINDS, clean_renders, noisy_canvases, variants

    fronts, sides, truth = clean_renders(3, 5301)
    assert len(fronts) == len(sides) == len(truth) == 3
    assert all(set(np.unique(m)) <= {0, 255} for m in fronts + sides)
    v = variants()
    assert v["all (the test set's)"] == MaskNoise() and v["none"] == NO_NOISE
    names = [f.name for f in dataclasses.fields(MaskNoise)]
    for kind, fields in KINDS.items():
        only = v[f"{kind} only"]
        assert {n for n in names if getattr(only, n) != getattr(NO_NOISE, n)} == set(fields)
    clean = noisy_canvases(fronts, "front", v["none"], 5301)
    assert np.array_equal(clean, np.stack([normalize_silhouette(m) for m in fronts]))
    noisy = noisy_canvases(fronts, "front", v["all (the test set's)"], 5301)
    assert np.array_equal(noisy, noisy_canvases(fronts, "front", v["all (the test set's)"], 5301))
    assert not np.array_equal(noisy, clean)
