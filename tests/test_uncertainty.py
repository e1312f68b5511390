"""Test-time augmentation and the calibrated measurement intervals (bodyshape/uncertainty.py)."""

from __future__ import annotations

import numpy as np
import pytest

from bodyshape.errors import BodyShapeError
from bodyshape.measurements import MEASUREMENT_NAMES
from bodyshape.silhouette import normalize_silhouette
from bodyshape.uncertainty import (
    N_TTA,
    IntervalModel,
    fit_intervals,
    load_intervals,
    mirrored,
    split_variants,
    tta_inputs,
)


def _body_mask(width: int) -> np.ndarray:
    """An asymmetric stick figure on a large canvas, normalised."""
    m = np.zeros((300, 200), np.uint8)
    m[20:280, 90:90 + width] = 255  # trunk
    m[60:70, 90 + width : 150] = 255  # one arm only: mirroring must move it
    return normalize_silhouette(m)


@pytest.mark.parametrize("width", [20, 21])
def test_mirrored_is_normalised_and_undoes_itself(width):
    sil = _body_mask(width)[None]
    once = mirrored(sil)
    assert not np.array_equal(once, sil)  # the arm moved to the other side
    assert np.array_equal(normalize_silhouette(once[0]), once[0])  # a normalised silhouette
    assert np.array_equal(mirrored(once), sil)


def test_tta_inputs_are_variant_major():
    f = np.stack([_body_mask(20), _body_mask(26)])
    s = np.stack([_body_mask(30), _body_mask(34)])
    h = np.array([1.6, 1.8], np.float32)
    f4, s4, h4 = tta_inputs(f, s, h)
    assert f4.shape == (N_TTA * 2,) + f.shape[1:] and h4.tolist() == pytest.approx([1.6, 1.8] * N_TTA)
    assert np.array_equal(f4[:2], f) and np.array_equal(s4[:2], s)  # variant 0: as taken
    assert np.array_equal(f4[2:4], mirrored(f)) and np.array_equal(s4[2:4], s)  # front mirrored
    assert np.array_equal(f4[4:6], f) and np.array_equal(s4[4:6], mirrored(s))  # side mirrored
    assert np.array_equal(split_variants(f4, 2)[3], mirrored(f))


def _spread_and_point(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Calibration-like rows: a TTA spread and a reported value per measurement, metres."""
    m = len(MEASUREMENT_NAMES)
    return rng.gamma(2.0, 0.004, (n, m)), rng.normal(0.9, 0.1, (n, m))


def test_fitted_intervals_cover_80_percent_and_widen_with_the_spread():
    rng = np.random.default_rng(0)

    def draw(n):
        spread, point = _spread_and_point(rng, n)
        truth = point + rng.normal(0, 1, point.shape) * np.sqrt(spread**2 + 0.005**2) * 2.0 - 0.003
        return truth, point, spread

    model = fit_intervals(*draw(20000))
    truth, point, spread = draw(20000)
    low, high = model.bounds(point, spread)
    coverage = ((truth >= low) & (truth <= high)).mean(0)
    assert np.all((coverage > 0.77) & (coverage < 0.83)), coverage
    assert np.all(low <= point) and np.all(point <= high)
    width = high - low
    wide = spread > np.median(spread)
    assert np.all(width[wide].mean() > 1.3 * width[~wide].mean())


def test_a_small_floor_lets_the_spread_tell_easy_captures_from_hard_ones():
    """Two kinds of capture the page cannot tell apart except by the looks' spread: one whose
    looks agree and whose errors are small (the photo path), one whose looks disagree more and
    whose errors are large (bodies off the body model). With a floor the size of the typical
    spread (the shipped share) their widths are more alike than their errors (one over-, one
    under-covered); a small floor share covers each kind near 80% (the trade-off measured on
    the real rows: training/interval_floor.py)."""
    rng = np.random.default_rng(2)
    m = len(MEASUREMENT_NAMES)

    def draw(n):
        hard = rng.random(n) < 0.5
        spread = np.where(hard[:, None], 0.005, 0.0025) * rng.gamma(8.0, 1 / 8.0, (n, m))
        point = rng.normal(0.9, 0.1, (n, m))
        return point + rng.normal(0, 1, (n, m)) * 3.0 * spread, point, spread, hard

    truth, point, spread, _ = draw(20000)
    fresh = draw(20000)

    def coverage_by_kind(model):
        t, p, s, hard = fresh
        low, high = model.bounds(p, s)
        inside = (t >= low) & (t <= high)
        return inside[~hard].mean(), inside[hard].mean()

    easy, hard = coverage_by_kind(fit_intervals(truth, point, spread, floor_share=0.1))
    assert abs(easy - 0.8) < 0.04 and abs(hard - 0.8) < 0.04, (easy, hard)
    easy, hard = coverage_by_kind(fit_intervals(truth, point, spread))
    assert easy > 0.85 and hard < 0.75, (easy, hard)


def test_failed_captures_get_their_own_wider_calibrated_intervals():
    rng = np.random.default_rng(1)

    def draw(n):
        spread, point = _spread_and_point(rng, n)
        warned = rng.random(n) < 0.25
        sigma = np.sqrt(spread**2 + 0.005**2) * np.where(warned, 3.5, 2.0)[:, None]  # odd poses err more
        return point + rng.normal(0, 1, point.shape) * sigma, point, spread, warned

    truth, point, spread, warned = draw(20000)
    model = fit_intervals(truth, point, spread, warned=warned)
    assert model.warned_rows == warned.sum()
    truth, point, spread, warned = draw(20000)
    low, high = model.bounds(point, spread, warned)
    inside = (truth >= low) & (truth <= high)
    for group in (warned, ~warned):  # calibrated in each group, not only on average
        assert np.all(np.abs(inside[group].mean(0) - 0.8) < 0.03), inside[group].mean(0)
    one = model.bounds(point[0], spread[0], True)[1] - model.bounds(point[0], spread[0], False)[1]
    assert np.all(one > 0)  # a warning widens the same row's interval
    # Without warned rows in the calibration, a warning changes nothing.
    plain = fit_intervals(truth, point, spread)
    assert np.array_equal(plain.bounds(point, spread, True)[0], plain.bounds(point, spread, False)[0])


def test_shipped_calibration_matches_this_version():
    from bodyshape.paths import WEIGHTS_DIR
    from bodyshape.uncertainty import file_sha256

    model = load_intervals()
    assert model.names == tuple(MEASUREMENT_NAMES)
    # Fitted for the shipped fused weights and with the shipped correction: a new either needs
    # `bodyshape calibrate-intervals`.
    assert model.weights_sha256 == file_sha256(WEIGHTS_DIR / "fused.safetensors")
    assert model.correction_sha256 == file_sha256(WEIGHTS_DIR / "correction.safetensors")
    assert "seed" in model.calibrated_on and "photo_bare" in model.calibrated_on
    j = [MEASUREMENT_NAMES.index(g) for g in ("chest", "waist", "hip")]
    assert all(model.q_low[i] < 0 < model.q_high[i] for i in j)
    # A girth's 80% interval at the typical spread is centimetres wide, not millimetres or metres.
    point = np.full(len(MEASUREMENT_NAMES), 0.9)
    low, high = model.bounds(point, np.asarray(model.floor))
    assert all(0.02 < high[i] - low[i] < 0.2 for i in j)
    # Captures that failed a capture check get intervals fitted on such rows: never narrower,
    # wider where those rows erred more (2026-12-02: chest and waist; the hip's are equal).
    assert model.warned_rows >= 40
    w_low, w_high = model.bounds(point, np.asarray(model.floor), warned=True)
    widths = [(w_high[i] - w_low[i], high[i] - low[i]) for i in j]
    assert all(w >= plain for w, plain in widths) and any(w > plain for w, plain in widths)


def test_a_calibration_with_another_correction_is_reported(tmp_path, caplog):
    """The intervals and the clothing allowance are fitted on the corrected measurements: a
    correction refitted after them leaves them stale, and loading says so (nothing said when
    they match, or for a calibration that predates the record)."""
    import dataclasses
    import shutil

    from bodyshape.paths import WEIGHTS_DIR
    from bodyshape.uncertainty import file_sha256

    for name in ("fused.safetensors", "correction.safetensors", "correction_fitted.safetensors"):
        shutil.copy(WEIGHTS_DIR / name, tmp_path)
    shipped = dataclasses.replace(load_intervals(), correction_sha256=file_sha256(tmp_path / "correction.safetensors"))
    assert shipped.fitted_correction_sha256 == file_sha256(tmp_path / "correction_fitted.safetensors")
    shipped.save(tmp_path / "intervals.json")
    caplog.clear()
    with caplog.at_level("WARNING"):
        load_intervals(tmp_path)
    assert not caplog.text
    # the allowance was fitted through fitted clothing's own correction: another one leaves it stale
    (tmp_path / "correction_fitted.safetensors").write_bytes(b"another fitted-clothing correction")
    with caplog.at_level("WARNING"):
        load_intervals(tmp_path)
    assert "clothing allowance through another" in caplog.text and "correction_fitted" in caplog.text
    (tmp_path / "correction_fitted.safetensors").unlink()  # now the general one corrects fitted clothing
    caplog.clear()
    with caplog.at_level("WARNING"):
        load_intervals(tmp_path)
    assert "clothing allowance through another" in caplog.text
    dataclasses.replace(load_intervals(tmp_path), fitted_correction_sha256="").save(tmp_path / "intervals.json")
    (tmp_path / "correction.safetensors").write_bytes(b"another correction")
    caplog.clear()
    with caplog.at_level("WARNING"):
        load_intervals(tmp_path)
    assert "another measurement correction" in caplog.text and "calibrate-intervals" in caplog.text
    dataclasses.replace(load_intervals(tmp_path), correction_sha256="").save(tmp_path / "intervals.json")
    caplog.clear()
    with caplog.at_level("WARNING"):
        load_intervals(tmp_path)
    assert not caplog.text


def test_a_calibration_for_other_measurements_is_refused(tmp_path):
    model = load_intervals()
    other = IntervalModel(model.names[:-1], model.floor[:-1], model.q_low[:-1], model.q_high[:-1])
    other.save(tmp_path / "intervals.json")
    with pytest.raises(BodyShapeError, match="calibrate-intervals"):
        IntervalModel.load(tmp_path / "intervals.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(BodyShapeError, match="cannot read"):
        IntervalModel.load(tmp_path / "broken.json")
