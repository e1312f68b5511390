"""The demo's request path without a browser: pipeline, page handler, CLI, round trip.

The round-trip accuracy test (girths within 15 mm through the full page path and Triton)
only means something with trained weights: it is skipped while the shipped weights say
``trained: False`` in their metadata.
"""

import csv
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import trimesh

from bodyshape.assets import have_u2netp
from bodyshape.capture import SPECS as CAPTURE_SPECS
from bodyshape.checkpoint import read_metadata
from bodyshape.measurements import BY_NAME, MEASUREMENT_NAMES
from bodyshape.paths import WEIGHTS_DIR
from demo.backend import BackendUnavailableError
from demo.make_assets import load_examples, true_measurements

pytestmark = pytest.mark.skipif(not have_u2netp(), reason="u2netp.onnx missing: run `bodyshape setup`")
GIRTHS = ("chest", "waist", "hip")
ROUND_TRIP_TOL_M = 0.015  # issue #12's photo-path target (measured 8.0 / 10.9 / 10.3 mm, 2026-12-04)
#: Bodies in the round trip. Per-body girth errors spread by about 20 mm (sd), so the mean of 4
#: bodies moves by +-10 mm from sample to sample: too few to tell 15 mm from 25 mm. 16 bodies
#: halve that, at about 70 s of CI time. The seed is one no model or earlier check has seen.
ROUND_TRIP_BODIES, ROUND_TRIP_SEED = 16, 7


def _trained() -> bool:
    return bool(read_metadata(WEIGHTS_DIR / "fused.safetensors")[1].get("trained", False))


class DownBackend:
    name = "Triton (down)"

    def reconstruct(self, *a):
        raise BackendUnavailableError(
            "the body-shape model server (Triton at 127.0.0.1:1) is not reachable right now"
        )

    def status(self):
        return "down"


@pytest.fixture(scope="module")
def local_handler():
    from demo.backend import LocalBackend
    from demo.handler import DemoHandler

    return DemoHandler(LocalBackend())


@pytest.fixture(scope="module")
def example():
    return load_examples()[0]


@pytest.mark.slow
def test_pipeline_outputs(local_handler, example, tmp_path):
    from demo.pipeline import measurement_rows, reconstruct_photos, write_outputs

    r = reconstruct_photos(example["front"], example["side"], example["height_cm"], local_handler.backend)
    assert r.vertices.shape == (13718, 3)
    # The typed height sets the size, Z up, feet on the floor.
    assert r.vertices[:, 2].min() == pytest.approx(0, abs=1e-4)
    assert r.measurements["height"] == pytest.approx(example["height_cm"] / 100, abs=2e-3)
    paths = write_outputs(r, tmp_path)
    obj = trimesh.load(paths["obj"], process=False)
    assert obj.vertices.shape == (13718, 3)
    glb = trimesh.load(paths["glb"], process=False)
    assert sum(len(g.vertices) for g in glb.geometry.values()) == 13718
    js = json.loads(paths["json"].read_text())
    assert js["measurements_cm"]["height"] == pytest.approx(example["height_cm"], abs=0.2)
    assert list(js["measurements_cm"]) == list(MEASUREMENT_NAMES)  # every measurement, in order
    # The capture checks: every one, with its outcome; the example photos follow the guide.
    assert [c["check"] for c in js["capture_checks"]] == list(CAPTURE_SPECS)
    assert js["capture_warnings"] == [] and all(c["passed"] for c in js["capture_checks"]), js["capture_checks"]
    header = paths["csv"].read_text().splitlines()[0]
    assert header == "measurement,label,cm,in,low_80_cm,high_80_cm,iso_8559_1_term,how_to_measure"
    # Every measurement has its 80% interval around the reported value; girths are centimetres wide.
    assert list(js["intervals_80_cm"]) == list(MEASUREMENT_NAMES)
    for name in ("chest", "waist", "hip"):
        low, high = js["intervals_80_cm"][name]
        assert low < js["measurements_cm"][name] < high and 1.0 < high - low < 20.0, (name, low, high)
    label = BY_NAME["height"].label
    cm = {row[0]: row[1] for row in measurement_rows(r.measurements, "cm")}
    inch = {row[0]: row[1] for row in measurement_rows(r.measurements, "in")}
    assert inch[label] == pytest.approx(cm[label] / 2.54, abs=0.06)


def _tetra_result(measurements: dict[str, float], intervals: dict | None = None):
    """A :class:`Result` with a 4-vertex mesh and given measurements: the outputs without a model."""
    from demo.pipeline import Result

    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    return Result(None, None, 1.7, np.zeros(20), vertices, faces, measurements, "test", intervals=intervals or {})


def test_every_measurement_in_table_csv_json_and_cli(tmp_path):
    """One row per measurement of MEASUREMENT_NAMES, in order, in cm and inches (= cm / 2.54),
    with its label and "how to measure it yourself" line from bodyshape.measurements."""
    from demo.handler import measurement_table
    from demo.pipeline import HOW_TO_HEADER, RANGE_HEADER, write_outputs
    from demo.reconstruct_cli import measurement_lines

    true_cm = np.array([12.34 + 7.3 * i for i in range(len(MEASUREMENT_NAMES))])
    intervals = {n: ((cm - 1.5) / 100, (cm + 2.5) / 100) for n, cm in zip(MEASUREMENT_NAMES, true_cm, strict=True)}
    result = _tetra_result({n: cm / 100 for n, cm in zip(MEASUREMENT_NAMES, true_cm, strict=True)}, intervals)
    specs = [BY_NAME[n] for n in MEASUREMENT_NAMES]
    assert all(m.label and m.how_to_measure for m in specs)
    # The page's table, in either unit.
    for units, scale in (("cm", 1), ("in", 1 / 2.54)):
        table = measurement_table(result.measurements, units, result.intervals)
        assert list(table.columns) == ["Measurement", units, RANGE_HEADER, HOW_TO_HEADER]
        assert list(table["Measurement"]) == [m.label for m in specs]
        assert list(table[RANGE_HEADER]) == [f"{(cm - 1.5) * scale:.1f} – {(cm + 2.5) * scale:.1f}" for cm in true_cm]
        assert list(table[HOW_TO_HEADER]) == [m.how_to_measure for m in specs]
        np.testing.assert_allclose(table[units], true_cm * scale, atol=0.051)
    # CSV: both units in every row.
    paths = write_outputs(result, tmp_path)
    with open(paths["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["measurement"] for row in rows] == list(MEASUREMENT_NAMES)
    for row, m, cm in zip(rows, specs, true_cm, strict=True):
        assert [row["label"], row["iso_8559_1_term"], row["how_to_measure"]] == [m.label, m.iso_term, m.how_to_measure]
        assert float(row["cm"]) == pytest.approx(cm, abs=0.051)
        assert float(row["in"]) == pytest.approx(cm / 2.54, abs=0.051)
        assert [float(row["low_80_cm"]), float(row["high_80_cm"])] == pytest.approx([cm - 1.5, cm + 2.5], abs=0.051)
    # JSON: both units and the definitions.
    js = json.loads(paths["json"].read_text())
    for key in ("measurements_cm", "measurements_in", "definitions"):
        assert list(js[key]) == list(MEASUREMENT_NAMES), key
    for m, cm in zip(specs, true_cm, strict=True):
        assert js["measurements_cm"][m.name] == pytest.approx(cm, abs=0.0051)
        assert js["measurements_in"][m.name] == pytest.approx(cm / 2.54, abs=0.0051)
        assert js["definitions"][m.name]["how_to_measure"] == m.how_to_measure
        assert js["intervals_80_cm"][m.name] == pytest.approx([cm - 1.5, cm + 2.5], abs=0.051)
    assert "inches" in js["units"] and "ISO 8559-1" in js["notes"]
    # The CLI's printout: label, cm, inches, and with --explain the line under each.
    lines = measurement_lines(result.measurements, explain=True, intervals=result.intervals)
    assert len(lines) == 2 * len(specs) and measurement_lines(result.measurements, intervals=result.intervals) == lines[::2]
    for row, how, m, cm in zip(lines[::2], lines[1::2], specs, true_cm, strict=True):
        label, cm_text, in_text, lo, hi = re.fullmatch(
            r"  (.+?) +([\d.]+) cm +([\d.]+) in   80% range ([\d.]+) – ([\d.]+) cm", row).groups()
        assert label == m.label and how.strip() == m.how_to_measure
        assert [float(lo), float(hi)] == pytest.approx([cm - 1.5, cm + 2.5], abs=0.051)
        assert float(cm_text) == pytest.approx(cm, abs=0.051)
        assert float(in_text) == pytest.approx(cm / 2.54, abs=0.051)


@pytest.mark.slow
def test_handler_errors_and_photo_deletion(local_handler, example, tmp_path, monkeypatch):
    from gradio.utils import get_upload_folder

    from demo.handler import Failure, Reconstruction

    h = local_handler
    # Uploaded photos live in Gradio's upload folder and are deleted after the request.
    up = Path(get_upload_folder()) / "test-demo-upload"
    up.mkdir(parents=True, exist_ok=True)
    front = up / "front.jpg"
    front.write_bytes(Path(example["front"]).read_bytes() + b"\0")  # not byte-equal to the example
    r = h.run(str(front), example["side"], example["height_cm"], "cm", {})
    assert isinstance(r, Reconstruction) and r.status.startswith("**Done"), r.status
    assert r.figure is not None and len(r.table) == len(MEASUREMENT_NAMES) and len(r.files) == 4
    assert r.front_preview.shape == (128 * 3, 96 * 3, 3)  # RGB: capture problems are marked in red
    assert not front.exists()
    assert Path(example["side"]).exists()  # files outside the upload folder are never touched
    # Same upload again (photo already deleted): silhouettes come from the session, new height.
    r = h.run(str(front), example["side"], 160, "in", r.cache)
    assert isinstance(r, Reconstruction), r.status
    assert r.measurements["height"] == pytest.approx(1.60, abs=2e-3)
    assert list(r.table.columns)[:2] == ["Measurement", "in"]
    assert all(v.image.size == 0 for v in r.cache.values())  # no photo pixels kept in the session

    bad = tmp_path / "x.jpg"
    bad.write_text("not an image")
    cases = [
        ((str(bad), example["side"], 170), "not an image"),
        ((example["side"], example["front"], 170), "swapped"),
        ((example["front"], example["side"], 90), "between 100 and 230"),
        ((example["front"], example["side"], None), "height"),
        ((None, example["side"], 170), "front photo"),
    ]
    for (f, s, height), message in cases:
        r = h.run(f, s, height, "cm", {})
        assert isinstance(r, Failure) and message in r.message, (message, r)
        assert r.status == f"**Error:** {r.message}" and r.message[0].isupper() and r.message.endswith(".")


def test_page_outputs_adapter():
    """The one adapter: a body fills every output in order; a failure clears the earlier body."""
    from demo.handler import Failure, Reconstruction
    from demo.page import OUTPUT_NAMES, output_values

    preview = np.zeros((384, 288), np.uint8)
    iv = {"height": (1.7, 1.7)}
    ok = Reconstruction("**Done in 1 s**", preview, preview, "fig", "table", ["a.obj"], {"height": 1.7}, iv, {"p": 1},
                        "**⚠ Check your photos**")  # fmt: skip
    assert output_values(ok) == ("**Done in 1 s**", "**⚠ Check your photos**", preview, preview, "fig", "table",
                                 ["a.obj"], {"measurements": {"height": 1.7}, "intervals": iv}, {"p": 1})  # fmt: skip
    values = dict(zip(OUTPUT_NAMES, output_values(Failure("Bad photo.", preview, None, {"p": 1})), strict=True))
    assert values["status"] == "**Error:** Bad photo." and values["front_preview"] is preview
    assert values["side_preview"] is None and values["cache"] == {"p": 1}
    assert values["figure"] is None and values["files"] is None and values["measurements"] == {}
    assert len(values["table"]) == 0 and values["feedback"] == ""


@pytest.fixture(scope="module")
def bad_capture(tmp_path_factory):
    """Photos of a rendered body with its feet together and its arms close to the body."""
    from PIL import Image

    from bodyshape.body_model import PoseOffsets, get_body_model
    from demo.capture_thresholds import posed_photo_masks
    from demo.synthetic import compose_photo

    shape = get_body_model().sample_shapes(4, seed=31)[1]
    offsets = {v: PoseOffsets(leg_spread=-20, arm_abduction=-32) for v in ("front", "side")}
    rng = np.random.default_rng(2)
    d = tmp_path_factory.mktemp("bad_capture")
    paths = {}
    for view, mask in zip(("front", "side"), posed_photo_masks(shape, offsets), strict=True):
        paths[view] = str(d / f"{view}.jpg")
        Image.fromarray(compose_photo(mask, rng)).save(paths[view], quality=90)
    return paths


@pytest.mark.slow
def test_bad_capture_warns_and_still_shows_the_result(local_handler, bad_capture, capsys):
    """Feet together, arms close: the page, the CLI and the JSON name both; the body is still made."""
    from bodyshape.capture import GUIDE, MARK_RGB
    from bodyshape.cli import main
    from demo.handler import Reconstruction

    r = local_handler.run(bad_capture["front"], bad_capture["side"], 170, "cm", {})
    assert isinstance(r, Reconstruction) and r.figure is not None and len(r.files) == 4, r.status
    assert "Check your photos" in r.feedback
    for name, problem in (("front_feet", "feet are too close together"), ("front_arms", "arms are too close")):
        assert problem in r.feedback and GUIDE[name] in r.feedback, r.feedback
    assert r.front_preview.shape == (384, 288, 3) and (r.front_preview == MARK_RGB).all(2).any()
    assert re.search(r"capture checks [\d.]+ ms", r.status), r.status
    js = json.loads(next(Path(p) for p in r.files if p.endswith(".json")).read_text())
    failed = {c["check"] for c in js["capture_checks"] if not c["passed"]}
    assert {"front_feet", "front_arms"} <= failed and len(js["capture_warnings"]) == len(failed)
    # The CLI prints the same warnings.
    out = Path(bad_capture["front"]).parent / "cli" / "body.obj"
    assert main(["reconstruct", bad_capture["front"], bad_capture["side"], "--height", "170", "-o", str(out),
                 "--local"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "capture warnings" in printed and "  ! Front photo: your feet are too close together" in printed, printed


@pytest.mark.slow
def test_unreachable_model_server_keeps_the_page_up(example):
    from demo.handler import DemoHandler, Failure

    r = DemoHandler(DownBackend()).run(example["front"], example["side"], 170, "cm", {})
    assert isinstance(r, Failure) and "not reachable" in r.message
    assert r.front_preview is not None and r.side_preview is not None  # the photos were still checked
    assert len(r.cache) == 2  # and kept: pressing again once the server is back needs no new upload


@pytest.mark.slow
def test_reconstruct_cli(example, tmp_path, capsys):
    from bodyshape.cli import main

    out = tmp_path / "me" / "body.glb"
    rc = main(
        ["reconstruct", example["front"], example["side"], "--height", "170", "-o", str(out), "--local",
         "--explain"]
    )  # fmt: skip
    assert rc == 0 and out.is_file()
    js = json.loads((out.parent / "body_measurements.json").read_text())
    assert js["measurements_cm"]["height"] == pytest.approx(170, abs=0.2)
    printed = capsys.readouterr().out
    print(printed)
    assert f"capture checks: all {len(CAPTURE_SPECS)} passed" in printed
    for name in MEASUREMENT_NAMES:  # every measurement printed in cm and inches, with its line
        m, cm = BY_NAME[name], js["measurements_cm"][name]
        low, high = js["intervals_80_cm"][name]
        rng = "" if low == high else r"   80% range ([\d.]+) – ([\d.]+) cm"
        row = re.search(rf"  {re.escape(m.label)} +([\d.]+) cm +([\d.]+) in{rng}\n      {re.escape(m.how_to_measure)}\n",
                        printed)  # fmt: skip
        assert row, name
        # the JSON keeps 2 decimals, the table prints 1: compare the numbers, not their rounding
        shown = [float(x) for x in row.groups()]
        wanted = [cm, js["measurements_in"][name]] + ([] if low == high else [low, high])
        assert shown == pytest.approx(wanted, abs=0.051), name
    assert main(["reconstruct", example["front"], example["side"], "--height", "300", "--local"]) == 2


@pytest.mark.slow
@pytest.mark.triton
@pytest.mark.skipif(
    not _trained() and not os.environ.get("BODYSHAPE_ROUND_TRIP"),
    reason="shipped weights are untrained (metadata trained: False); BODYSHAPE_ROUND_TRIP=1 runs it anyway",
)
def test_round_trip_girths_through_triton(tmp_path):
    """Known synthetic bodies -> photos -> the page's path through Triton -> girths within 15 mm on average."""
    from bodyshape.body_model import get_body_model
    from bodyshape.triton_server import BundledTriton
    from demo.backend import TritonBackend
    from demo.handler import DemoHandler, Reconstruction
    from demo.synthetic import photo_pair

    shapes = get_body_model().sample_shapes(ROUND_TRIP_BODIES, seed=ROUND_TRIP_SEED)
    errors = []
    with BundledTriton() as server:
        h = DemoHandler(TritonBackend(server.http_url))
        for i, shape in enumerate(shapes):
            truth = true_measurements(shape)
            f, s = photo_pair(shape, seed=i)
            r = h.run(*_save(tmp_path, i, f, s), truth["height"] * 100, "cm", {})
            assert isinstance(r, Reconstruction), r.status
            errors.append([r.measurements[g] - truth[g] for g in GIRTHS])
            print(f"body {i}: girth errors (mm)", np.round(np.array(errors[-1]) * 1000, 1))
    err = np.abs(np.array(errors))
    print("round-trip girth MAE (mm):", dict(zip(GIRTHS, (err.mean(0) * 1000).round(1), strict=True)),
          "bias (mm):", (np.array(errors).mean(0) * 1000).round(1))
    assert (err.mean(0) < ROUND_TRIP_TOL_M).all(), err * 1000


def _save(tmp_path, i, front, side):
    from PIL import Image

    paths = []
    for view, img in (("front", front), ("side", side)):
        p = tmp_path / f"{i}_{view}.png"
        Image.fromarray(img).save(p)
        paths.append(str(p))
    return paths


def test_env_triton_url_is_the_default(monkeypatch):
    import argparse

    from demo import app

    monkeypatch.setenv("BODYSHAPE_TRITON_URL", "10.1.2.3:8000")
    p = argparse.ArgumentParser()
    app.add_arguments(p)
    args = p.parse_args([])
    assert args.triton_url == "10.1.2.3:8000" and args.host == "127.0.0.1"
    assert os.environ["BODYSHAPE_TRITON_URL"] == "10.1.2.3:8000"


def test_stop_event_is_set_on_the_servers_loop():
    """The page's close sets gradio's asyncio stop_event on the loop whose waiters it wakes
    (from another thread ``set()`` can fail with "deque mutated during iteration")."""
    import asyncio
    import threading
    from types import SimpleNamespace

    from demo.page import set_stop_event_on_its_loop

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    try:
        event = asyncio.run_coroutine_threadsafe(_make_event(), loop).result(5)
        waiters = [asyncio.run_coroutine_threadsafe(event.wait(), loop) for _ in range(20)]
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0.05), loop).result(5)  # waiters registered
        assert not any(w.done() for w in waiters)
        set_stop_event_on_its_loop(SimpleNamespace(app=SimpleNamespace(stop_event=event)))
        assert event.is_set()
        assert all(w.result(5) is True for w in waiters)
        set_stop_event_on_its_loop(SimpleNamespace())  # no app (never launched): nothing to do
    finally:
        loop.call_soon_threadsafe(loop.stop)


async def _make_event():
    import asyncio

    return asyncio.Event()
