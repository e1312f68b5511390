"""Declared clothing: the body refitted under the allowance (bodyshape/clothing.py), its
calibration and intervals (bodyshape/uncertainty.py), the page, the CLI and the JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bodyshape.errors import BodyShapeError
from bodyshape.measurements import MEASUREMENT_NAMES

GIRTHS = ("chest", "waist", "hip")


def cloth_allowance() -> np.ndarray:
    """(M,) m: what about 1 cm of cloth adds to a body's measurements (the allowance calibrated
    through the general correction, 2026-12-05): a 6-7 cm change for the refit tests to make."""
    out = np.zeros(len(MEASUREMENT_NAMES))
    for name, mm in {"chest": 57, "waist": 58, "hip": 72, "thigh": 44, "underbust": 51, "upper_arm": 22,
                     "across_back": 22, "shoulder": 22}.items():  # fmt: skip
        out[MEASUREMENT_NAMES.index(name)] = mm / 1000
    return out


@pytest.fixture(scope="module")
def body():
    from bodyshape.body_model import get_body_model

    return get_body_model().sample_shapes(6, seed=4242), np.array([1.55, 1.62, 1.70, 1.75, 1.82, 1.90], np.float32)


def test_refit_takes_the_allowance_off_the_measured_mesh(body):
    from bodyshape.measurements import get_measurer
    from bodyshape.reconstruct import mesh_from_shape
    from bodyshape.refit import refitted

    shapes, heights = body
    before = get_measurer().batch(mesh_from_shape(shapes, heights))
    allowance = cloth_allowance()
    new_shapes, meshes, after = refitted(shapes, heights, -allowance)
    change = before - after
    for g in GIRTHS:  # most of it on the typical body, never a body much smaller than asked for
        j = MEASUREMENT_NAMES.index(g)
        assert 0.6 * allowance[j] < np.median(change[:, j]) < 1.2 * allowance[j], (g, change[:, j])
        assert np.all(change[:, j] < 1.5 * allowance[j]), (g, change[:, j])
    # The numbers are those of the mesh returned, at the typed height.
    np.testing.assert_allclose(after, get_measurer().batch(meshes), atol=1e-6)
    np.testing.assert_allclose(after[:, MEASUREMENT_NAMES.index("height")], heights, atol=2e-3)
    assert not np.allclose(new_shapes, shapes)
    # Nothing to take off: the same body.
    same, _, _ = refitted(shapes, heights, np.zeros(len(MEASUREMENT_NAMES)))
    np.testing.assert_allclose(same, shapes, atol=1e-6)


def test_a_second_gauss_newton_step_leaves_less_of_the_change_undone(body):
    """One step leaves 3-27 mm of a 6-8 cm allowance undone on these bodies (docs/evaluation.md);
    the second, from a new Jacobian, never makes the (weighted) match worse and takes off a good
    part of what is left (under definitions version 2 about half; with the girths weighted,
    2026-12-03, 27% of the summed girths here). Bodies 3 and 4 sit at the bottom of Anny's
    weight range (0.00 and 0.04): no shape is thinner by the whole allowance, so their waists
    and hips stay 13-19 mm above the target, and the second step trades a little girth for the
    other measurements (their 16-measurement mismatch stays or falls: 45 -> 45 and 62 -> 37 mm)."""
    from bodyshape.measurements import get_measurer
    from bodyshape.reconstruct import mesh_from_shape
    from bodyshape.refit import match_weights, refit

    shapes, heights = body
    allowance = cloth_allowance()
    before = get_measurer().batch(mesh_from_shape(shapes, heights))
    g = [MEASUREMENT_NAMES.index(n) for n in GIRTHS]
    undone = {}
    for steps in (1, 2):
        out = np.stack([refit(s, float(h), -allowance, steps) for s, h in zip(shapes, heights, strict=True)])
        undone[steps] = np.abs(get_measurer().batch(mesh_from_shape(out, heights)) - (before - allowance))
    w = match_weights()  # the match the refit minimises: the girths weighted
    assert np.all(np.linalg.norm(undone[2] * w, axis=1) <= np.linalg.norm(undone[1] * w, axis=1) + 1e-5)
    assert undone[2][:, g].sum() < 0.8 * undone[1][:, g].sum(), (undone[1][:, g], undone[2][:, g])
    assert np.all(np.median(undone[2][:, g], axis=0) < 0.15 * allowance[g]), undone[2][:, g]


def test_weighting_the_girths_leaves_less_of_them_undone(body, monkeypatch):
    """The refit weights chest, waist and hip more (bodyshape.refit.GIRTH_WEIGHT): asked for a
    correction-sized change (girths -2 to +2 cm, the others a few millimetres), less of the
    girths' change is left undone than with every measurement weighted alike, and the other
    measurements' mismatch grows by at most a few millimetres in sum."""
    import bodyshape.refit
    from bodyshape.measurements import get_measurer
    from bodyshape.reconstruct import mesh_from_shape
    from bodyshape.refit import refitted

    shapes, heights = body
    g = [MEASUREMENT_NAMES.index(n) for n in GIRTHS]
    others = [j for j, n in enumerate(MEASUREMENT_NAMES) if n not in (*GIRTHS, "height")]
    rng = np.random.default_rng(5)
    change = rng.normal(0, 0.004, (len(shapes), len(MEASUREMENT_NAMES)))
    change[:, g] = rng.uniform(-0.02, 0.02, (len(shapes), 3))
    change[:, MEASUREMENT_NAMES.index("height")] = 0
    target = get_measurer().batch(mesh_from_shape(shapes, heights)) + change
    undone = {}
    for weight in (1.0, bodyshape.refit.GIRTH_WEIGHT):
        monkeypatch.setattr(bodyshape.refit, "GIRTH_WEIGHT", weight)
        undone[weight] = np.abs(refitted(shapes, heights, change)[2] - target) * 1000
    alike, weighted = undone[1.0], undone[bodyshape.refit.GIRTH_WEIGHT]
    assert bodyshape.refit.GIRTH_WEIGHT > 1
    assert weighted[:, g].sum() < 0.8 * alike[:, g].sum(), (alike[:, g], weighted[:, g])
    assert weighted[:, others].sum() < alike[:, others].sum() + 5 * len(shapes), (alike[:, others], weighted[:, others])


def test_allowance_centres_the_mean_error_of_its_calibration_rows(body):
    """The allowance starts from the *mean* error (the bias the product is judged by), not the
    median, which a few people in thicker cloth (a skewed margin) would leave biased; each
    round of the fixed point then adds the mean error the refit left, and brings it closer to
    zero. Bodies 3 and 4 of the fixture are left out: at the bottom of Anny's weight range, no
    shape is thin enough to follow (test_a_second_gauss_newton_step_leaves_less_of_the_change_undone)."""
    from bodyshape.clothing import fit_allowance
    from bodyshape.measurements import get_measurer
    from bodyshape.reconstruct import mesh_from_shape

    shapes, heights = (x[[0, 1, 2, 5]] for x in body)
    point = get_measurer().batch(mesh_from_shape(shapes, heights))
    g = [MEASUREMENT_NAMES.index(n) for n in GIRTHS]
    margin = np.zeros_like(point)
    margin[:, g] = np.array([0.02, 0.02, 0.03, 0.05])[:, None]  # mean 30 mm, median 25 mm
    truth = point - margin
    start, started = fit_allowance(shapes, heights, point, truth, rounds=0)
    np.testing.assert_allclose(start[g], 0.030, atol=1e-6)
    by_median, _ = fit_allowance(shapes, heights, point, truth, rounds=0, centre=np.median)
    np.testing.assert_allclose(by_median[g], 0.025, atol=1e-6)
    allowance, reported = fit_allowance(shapes, heights, point, truth)
    assert allowance[MEASUREMENT_NAMES.index("height")] == 0.0
    before, after = (np.abs(np.mean(r - truth, axis=0)[g]).sum() for r in (started, reported))
    assert after < 0.5 * before, (before, after)


def test_unknown_clothing_is_refused():
    from bodyshape.clothing import check_clothing
    from bodyshape.uncertainty import load_intervals

    with pytest.raises(BodyShapeError, match="clothing must be one of tight, fitted"):
        check_clothing("loose")
    with pytest.raises(BodyShapeError, match="clothing must be one of"):
        load_intervals().allowance("")


def test_shipped_allowance_and_its_wider_intervals():
    """Fitted clothing has its own correction, which takes the cloth (2 pi x 1 cm = 63 mm on a
    girth) off itself: the allowance shipped beside it is what that leaves, a few mm, none on the
    wrist; and the fitted intervals are never narrower."""
    from bodyshape.correction import CORRECTION_FILES
    from bodyshape.paths import WEIGHTS_DIR
    from bodyshape.uncertainty import file_sha256, load_intervals

    model = load_intervals()
    assert model.fitted_rows >= 40 and "clothing allowance" in model.calibrated_on
    assert model.fitted_correction_sha256 == file_sha256(WEIGHTS_DIR / CORRECTION_FILES["fitted"])
    allowance = model.allowance("fitted") * 1000
    for g in GIRTHS:
        assert abs(allowance[MEASUREMENT_NAMES.index(g)]) < 20, (g, allowance)
    assert abs(allowance[MEASUREMENT_NAMES.index("wrist")]) < 10
    assert allowance[MEASUREMENT_NAMES.index("height")] == 0
    assert not np.any(model.allowance("tight"))
    point = np.full(len(MEASUREMENT_NAMES), 0.9)
    tight = np.subtract(*model.bounds(point, np.asarray(model.floor))[::-1])
    fitted = np.subtract(*model.bounds(point, np.asarray(model.floor), clothing="fitted")[::-1])
    assert np.all(fitted >= tight - 1e-12) and all(fitted[MEASUREMENT_NAMES.index(g)] > tight[MEASUREMENT_NAMES.index(g)]
                                                   for g in GIRTHS)  # fmt: skip


def test_fit_clothing_quantiles_cover_the_dressed_rows():
    from bodyshape.uncertainty import fit_clothing, fit_intervals

    rng = np.random.default_rng(3)
    m = len(MEASUREMENT_NAMES)
    spread = rng.gamma(2.0, 0.004, (4000, m))
    point = rng.normal(0.9, 0.1, (4000, m))
    truth = point + rng.normal(0, 1, (4000, m)) * np.sqrt(spread**2 + 0.005**2) * 2
    model = fit_intervals(truth, point, spread)
    dressed = point + rng.normal(0, 1, (4000, m)) * np.sqrt(spread**2 + 0.005**2) * 4  # refitted bodies err more
    model = fit_clothing(model, truth, dressed, spread, np.full(m, 0.05))
    low, high = model.bounds(dressed, spread, clothing="fitted")
    inside = ((truth >= low) & (truth <= high)).mean(0)
    assert np.all(np.abs(inside - 0.8) < 0.04), inside


@pytest.mark.slow
def test_fitted_clothing_on_the_page_cli_and_json(tmp_path, capsys):
    """The same photos: "fitted" gives a smaller body (girths down by about the allowance), says
    so in the JSON, and the CLI takes --clothing."""
    from bodyshape.cli import main
    from demo.backend import LocalBackend
    from demo.handler import DemoHandler, Reconstruction
    from demo.make_assets import load_examples

    ex = load_examples()[0]
    handler = DemoHandler(LocalBackend())
    runs = {}
    for worn in ("tight", "fitted"):
        r = handler.run(ex["front"], ex["side"], ex["height_cm"], "cm", {}, worn)
        assert isinstance(r, Reconstruction), r.status
        runs[worn] = json.loads(next(Path(p) for p in r.files if p.endswith(".json")).read_text())
    tight, fitted = runs["tight"], runs["fitted"]
    assert tight["clothing"]["declared"] == "tight" and fitted["clothing"]["declared"] == "fitted"
    for g in GIRTHS:
        drop = tight["measurements_cm"][g] - fitted["measurements_cm"][g]
        assert 1.0 < drop < 12.0, (g, drop)
        low, high = fitted["intervals_80_cm"][g]
        assert low <= fitted["measurements_cm"][g] <= high
    assert fitted["measurements_cm"]["height"] == pytest.approx(ex["height_cm"], abs=0.3)
    # A value the page does not offer (a hand-made API call) is a clear error, not a crash.
    r = handler.run(ex["front"], ex["side"], ex["height_cm"], "cm", {}, "loose")
    assert not isinstance(r, Reconstruction) and "Clothing must be one of" in r.message
    out = tmp_path / "body.obj"
    assert main(["reconstruct", ex["front"], ex["side"], "--height", str(ex["height_cm"]), "-o", str(out),
                 "--local", "--clothing", "fitted"]) == 0  # fmt: skip
    assert json.loads((tmp_path / "body_measurements.json").read_text())["clothing"]["declared"] == "fitted"
    capsys.readouterr()


def test_the_page_corrects_fitted_clothing_with_its_own_correction():
    """A *fitted* result is the network's body moved by the shipped fitted-clothing correction
    (correction_fitted.safetensors, fitted on dressed rows) less the allowance, not by the
    general correction; a *tight* result by the general one."""
    from bodyshape.correction import CORRECTION_FILES, load_correction, reported_bodies
    from bodyshape.paths import WEIGHTS_DIR
    from bodyshape.uncertainty import load_intervals, tta_inputs, tta_measure
    from demo.backend import LocalBackend
    from demo.make_assets import load_examples
    from demo.pipeline import reconstruct_silhouettes, silhouettes_from_photos

    assert (WEIGHTS_DIR / CORRECTION_FILES["fitted"]).exists()
    assert load_correction(clothing="fitted").info["clothing"] == "fitted"
    ex = load_examples()[0]
    front, side = silhouettes_from_photos(ex["front"], ex["side"])
    backend = LocalBackend()
    h = np.array([ex["height_cm"] / 100], np.float32)
    tta = tta_measure(*backend.reconstruct(*tta_inputs(front.silhouette[None], side.silhouette[None], h)), h)

    def by(correction, clothing):
        return reported_bodies(tta.shape, h, tta.measurements, front.silhouette[None], side.silhouette[None],
                               correction, load_intervals().allowance(clothing))[2][0]  # fmt: skip

    g = [MEASUREMENT_NAMES.index(n) for n in GIRTHS]
    for clothing in ("tight", "fitted"):
        page = reconstruct_silhouettes(front, side, float(h[0]), backend, clothing=clothing).measurements
        page = np.array([page[n] for n in MEASUREMENT_NAMES])
        other = "tight" if clothing == "fitted" else "fitted"
        own, theirs = by(load_correction(clothing=clothing), clothing), by(load_correction(clothing=other), clothing)
        np.testing.assert_allclose(page, own, atol=1e-6)
        assert np.abs(page[g] - theirs[g]).max() > 0.002, clothing  # the two corrections differ by mm
