"""End to end in a real browser: Debian's Chromium (driven by playwright) against the page,
the page against the real bundled Triton server.

Needs ``apt-get install chromium`` (playwright never downloads a browser here) and the u2netp
weights (``bodyshape setup``). Timings (button press -> mesh on screen) are printed and written
to ``$BODYSHAPE_TIMINGS`` if set; ``BODYSHAPE_SCREENSHOT=path.png`` saves a screenshot.
"""

import json
import os
import re
import time
from pathlib import Path

import pytest
from PIL import Image

from bodyshape.assets import have_u2netp
from bodyshape.measurements import BY_NAME, MEASUREMENTS

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
RESULT_TIMEOUT_MS = 120_000
#: True once the body's Mesh3d is drawn (the page starts with an empty placeholder scene).
MESH_SHOWN = """() => {
  const gd = document.querySelector('#mesh_plot .js-plotly-plot');
  return !!(gd && gd._fullData && gd._fullData[0] && gd._fullData[0].x && gd._fullData[0].x.length > 1000
            && gd.querySelector('.gl-container canvas'));
}"""


pytestmark = [
    pytest.mark.browser,
    pytest.mark.triton,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium: apt-get install -y chromium"),
    pytest.mark.skipif(not have_u2netp(), reason="u2netp.onnx missing: run `bodyshape setup`"),
]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Front and side photos of a known synthetic body on textured backgrounds, made here."""
    from bodyshape.body_model import get_body_model
    from demo.make_assets import true_measurements
    from demo.synthetic import photo_pair

    shape = get_body_model().sample_shapes(6, seed=77)[4]
    front, side = photo_pair(shape, seed=5)
    d = tmp_path_factory.mktemp("photos")
    Image.fromarray(front).save(d / "front.jpg", quality=90)
    Image.fromarray(side).save(d / "side.jpg", quality=90)
    (d / "notes.jpg").write_text("this is a text file, not a photo")
    return {
        "front": d / "front.jpg",
        "side": d / "side.jpg",
        "bad": d / "notes.jpg",
        "height_cm": round(true_measurements(shape)["height"] * 100, 1),
    }


@pytest.fixture(scope="module")
def bad_capture(tmp_path_factory):
    """Photos of a rendered body (demo.synthetic's painter) with its feet together and its
    arms close to the body: a capture the checks must warn about."""
    import numpy as np

    from bodyshape.body_model import PoseOffsets, get_body_model
    from demo.capture_thresholds import posed_photo_masks
    from demo.synthetic import compose_photo

    shape = get_body_model().sample_shapes(4, seed=31)[1]
    offsets = {v: PoseOffsets(leg_spread=-20, arm_abduction=-32) for v in ("front", "side")}
    rng = np.random.default_rng(2)
    d = tmp_path_factory.mktemp("bad_capture")
    for view, mask in zip(("front", "side"), posed_photo_masks(shape, offsets), strict=True):
        Image.fromarray(compose_photo(mask, rng)).save(d / f"{view}.jpg", quality=90)
    return {"front": d / "front.jpg", "side": d / "side.jpg"}


@pytest.fixture(scope="module")
def page_url():
    from bodyshape.triton_server import BundledTriton
    from demo.backend import TritonBackend
    from demo.page import serve_page

    with BundledTriton() as server, serve_page(TritonBackend(server.http_url)) as served:
        yield served.url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, page_url):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1400})
    pg = ctx.new_page()
    pg.goto(page_url)
    pg.wait_for_selector("#reconstruct", timeout=60_000)
    yield pg
    ctx.close()


def _upload(page, front, side, height):
    page.locator("#front_photo input[type=file]").set_input_files(str(front))
    page.locator("#side_photo input[type=file]").set_input_files(str(side))
    # Wait until both uploads are shown (the upload finished) before pressing the button.
    page.wait_for_selector("#front_photo img", timeout=30_000)
    page.wait_for_selector("#side_photo img", timeout=30_000)
    page.locator("#height_cm input").fill(str(height))


def _table(page) -> dict[str, tuple]:
    """{label: (value, (low, high) or None, how to measure)} read off the rendered measurements
    table (cells are lines; the height's empty range cell is no line)."""
    labels = {m.label for m in MEASUREMENTS}
    lines = [t.strip() for t in page.locator("#measurements").inner_text().splitlines() if t.strip()]
    out = {}
    for i, label in enumerate(lines[:-2]):
        if label not in labels:
            continue
        try:
            value = float(lines[i + 1])
        except ValueError:
            continue  # a header or another cell
        rng = re.fullmatch(r"([\d.]+) – ([\d.]+)", lines[i + 2])
        interval = (float(rng[1]), float(rng[2])) if rng else None
        out[label] = (value, interval, lines[i + 3] if rng and i + 3 < len(lines) else lines[i + 2])
    return out


def _server_timings(status: str) -> dict[str, float]:
    pats = {
        "server_total": r"Done in ([\d.]+) s",
        "rembg": r"background removal ([\d.]+) s",
        "triton": r"body model \([^)]*\) ([\d.]+) s",
        "measurements": r"measurements ([\d.]+) s",
        "figure_files": r"figure and files ([\d.]+) s",
    }
    return {k: float(m.group(1)) for k, p in pats.items() if (m := re.search(p, status))}


def test_photos_to_mesh_and_measurements(page, photos):
    runs = []
    for i in range(2):  # two users in a row; each a fresh page, as a user would see it
        if i:
            page.goto(page.url)
            page.wait_for_selector("#reconstruct", timeout=60_000)
        _upload(page, photos["front"], photos["side"], photos["height_cm"])
        t0 = time.perf_counter()
        page.locator("#reconstruct").click()
        page.wait_for_function(MESH_SHOWN, timeout=RESULT_TIMEOUT_MS)
        t_mesh = time.perf_counter() - t0
        page.wait_for_function(
            "document.querySelector('#status') && document.querySelector('#status').innerText.includes('Done')",
            timeout=RESULT_TIMEOUT_MS,
        )
        status = page.locator("#status").inner_text()
        runs.append({"press_to_mesh_s": round(t_mesh, 2), **_server_timings(status)})
    print("\nbutton press -> mesh on screen:", runs)
    if os.environ.get("BODYSHAPE_TIMINGS"):
        Path(os.environ["BODYSHAPE_TIMINGS"]).write_text(json.dumps(runs, indent=1))

    # The 3D plot is a Plotly Mesh3d with the whole body in it.
    kind, n_vertices = page.evaluate(
        "(() => { const gd = document.querySelector('#mesh_plot .js-plotly-plot');"
        " return [gd._fullData[0].type, gd._fullData[0].x.length]; })()"
    )
    assert kind == "mesh3d" and n_vertices == 13718
    # Silhouette previews and the measurements table, with plausible values.
    assert page.locator("#front_sil img").count() == 1 and page.locator("#side_sil img").count() == 1
    table = _table(page)
    # Every measurement, in order of MEASUREMENTS, with its "how to measure it yourself" line.
    assert list(table) == [m.label for m in MEASUREMENTS]
    assert all(table[m.label][2] == m.how_to_measure for m in MEASUREMENTS), table
    assert table[BY_NAME["height"].label][0] == pytest.approx(photos["height_cm"], abs=0.3)
    assert table[BY_NAME["height"].label][1] is None  # typed, not estimated: no range
    for name in ("chest", "waist", "hip"):
        value, (low, high), _ = table[BY_NAME[name].label]
        assert 40 < value < 200 and low <= value <= high and 1 < high - low < 25, (name, table)
    assert page.locator("#downloads").inner_text().count(".") >= 4  # OBJ, GLB, CSV, JSON
    # Inches on request.
    page.locator("#units label", has_text="in").click()
    deadline = time.monotonic() + 30
    while (table_in := _table(page)) == table and time.monotonic() < deadline:
        time.sleep(0.2)  # until the table shows the new units
    assert list(table_in) == list(table)
    for label, (cm, interval, _) in table.items():
        assert table_in[label][0] == pytest.approx(cm / 2.54, abs=0.08), label  # both rounded to 0.1
        if interval:
            assert table_in[label][1] == pytest.approx([v / 2.54 for v in interval], abs=0.08), label
    if os.environ.get("BODYSHAPE_SCREENSHOT"):
        page.locator("#units label", has_text="cm").click()
        time.sleep(1.0)
        page.screenshot(path=os.environ["BODYSHAPE_SCREENSHOT"], full_page=True)


def test_non_image_upload_shows_a_clear_error(page, photos):
    _upload_bad = page.locator("#front_photo input[type=file]")
    _upload_bad.set_input_files(str(photos["bad"]))
    page.locator("#side_photo input[type=file]").set_input_files(str(photos["side"]))
    page.wait_for_selector("#side_photo img", timeout=30_000)
    page.locator("#height_cm input").fill("170")
    time.sleep(0.5)
    page.locator("#reconstruct").click()
    page.wait_for_function(
        "document.querySelector('#status') && document.querySelector('#status').innerText.includes('Error')",
        timeout=RESULT_TIMEOUT_MS,
    )
    status = page.locator("#status").inner_text()
    assert "Error: The front photo is not an image" in status, status
    # The request failed as an error (gr.Error, what API clients get), shown in a toast too.
    toast = page.locator("[data-testid=toast-text]")
    toast.first.wait_for(timeout=10_000)
    assert "The front photo is not an image" in toast.first.inner_text()
    assert "Traceback" not in page.content()
    assert not page.evaluate(MESH_SHOWN)


def test_bad_capture_shows_a_warning_with_the_result(page, bad_capture):
    """Feet together and arms close: the page warns (what to do), marks the silhouettes and
    still shows the body."""
    from bodyshape.capture import GUIDE

    _upload(page, bad_capture["front"], bad_capture["side"], 170)
    t0 = time.perf_counter()
    page.locator("#reconstruct").click()
    page.wait_for_function(MESH_SHOWN, timeout=RESULT_TIMEOUT_MS)
    print(f"\nbad capture: button press -> mesh on screen {time.perf_counter() - t0:.2f} s")
    page.wait_for_function(
        "document.querySelector('#capture_feedback') && "
        "document.querySelector('#capture_feedback').innerText.includes('Check your photos')",
        timeout=RESULT_TIMEOUT_MS,
    )
    feedback = " ".join(page.locator("#capture_feedback").inner_text().split())
    assert "Front photo: your feet are too close together" in feedback, feedback
    assert GUIDE["front_feet"] in feedback and "arms are too close" in feedback, feedback
    assert "Done" in page.locator("#status").inner_text()
    # The marked silhouette: red pixels in the front preview (an RGB PNG, not the grey one).
    red = page.evaluate(
        """async () => {
          const img = document.querySelector('#front_sil img');
          await img.decode();
          const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
          const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
          const d = ctx.getImageData(0, 0, c.width, c.height).data;
          let n = 0;
          for (let i = 0; i < d.length; i += 4) if (d[i] > 200 && d[i + 1] < 90 && d[i + 2] < 60) n++;
          return n;
        }"""
    )
    assert red > 50, red
