"""The demo's request path without the web page: two photos + height -> mesh + measurements.

Used by the Gradio page (:mod:`demo.handler`), ``bodyshape reconstruct`` and the tests, so that
all three run exactly the same code:

    result = reconstruct_photos("front.jpg", "side.jpg", 178, backend)
    result.measurements            # metres
    write_outputs(result, "out/")  # OBJ, GLB, CSV, JSON
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bodyshape.capture import CaptureCheck, check_capture
from bodyshape.clothing import CLOTHING, DEFAULT_CLOTHING, check_clothing
from bodyshape.correction import MeasurementCorrection, load_correction, reported_bodies
from bodyshape.errors import BodyShapeError
from bodyshape.measurements import MEASUREMENT_NAMES, MEASUREMENTS, Measurement
from bodyshape.photo import PhotoSilhouette, Segmenter, check_view_pair, get_segmenter, photo_to_silhouette
from bodyshape.reconstruct import check_height_cm
from bodyshape.shared import Shared
from bodyshape.uncertainty import COVERAGE, IntervalModel, load_intervals, tta_inputs, tta_measure

_INTERVALS: Shared[IntervalModel] = Shared(load_intervals, "interval calibration")
#: The shipped interval calibration (bodyshape/weights/intervals.json), read once per process.
get_intervals = _INTERVALS.get
_CORRECTION: Shared[MeasurementCorrection] = Shared(lambda clothing: load_correction(clothing=clothing), "measurement correction")


def get_correction(clothing: str = DEFAULT_CLOTHING) -> MeasurementCorrection:
    """The shipped measurement correction for the declared ``clothing``
    (bodyshape/weights/correction*.safetensors), read once per process."""
    return _CORRECTION.get(clothing)

CM_PER_INCH = 2.54
#: The page table's column with each measurement's "how to measure this yourself" line.
HOW_TO_HEADER = "How to measure it yourself"
#: What the numbers are, for the JSON download.
MEASUREMENT_NOTES = (
    "Measurements as ISO 8559-1 defines them, on the reconstructed rest-pose mesh: girths are "
    "convex-hull (tape-measure) perimeters of a plane section, surface lengths follow the body's "
    "outline as a tape does, height, inside leg and shoulder width are straight. Definitions on the "
    "mesh: bodyshape/measurements.py and docs/measurements.md."
)

#: What the intervals mean, for the JSON download.
INTERVALS_NOTE = (
    f"Each measurement's {COVERAGE:.0%} interval: on synthetic bodies like the calibration set (bare bodies in the "
    "capture pose and off it, bodies off the body model, bare photos), about 8 in 10 true values fall inside. It "
    "widens where the model's four looks at the photos disagree, and when a capture check fails (odd poses err "
    "more). Clothing: a garment 1 cm off the body adds about 6 cm to a girth, which no silhouette can tell from "
    "the body; with clothing 'fitted' the cloth is taken off by a correction learned on dressed synthetic bodies and a "
    "calibrated allowance, and the interval is calibrated on dressed synthetic photos. Loose clothing is not covered. Calibration and coverage per test split: "
    "docs/evaluation.md."
)


@dataclass
class Result:
    front: PhotoSilhouette
    side: PhotoSilhouette
    height_m: float
    shape: np.ndarray  # (N_SHAPE,)
    vertices: np.ndarray  # (V, 3) metres, Z up, feet on z = 0
    faces: np.ndarray  # (F, 3)
    measurements: dict[str, float]  # metres
    backend: str
    timings: dict[str, float] = field(default_factory=dict)  # seconds
    checks: list[CaptureCheck] = field(default_factory=list)  # capture feedback (bodyshape.capture)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)  # metres, 80% (uncertainty)
    clothing: str = DEFAULT_CLOTHING  # what the person said they wear (bodyshape.clothing)

    @property
    def warnings(self) -> list[str]:
        """What the failed capture checks tell the user (the result is still shown)."""
        return [c.message for c in self.checks if not c.passed]


def silhouettes_from_photos(front_src, side_src, segmenter: Segmenter | None = None):
    """Both photos -> (front, side) :class:`PhotoSilhouette`, checked as a pair."""
    seg = segmenter or get_segmenter()
    front = photo_to_silhouette(front_src, "front", seg)
    side = photo_to_silhouette(side_src, "side", seg)
    check_view_pair(front, side)
    return front, side


def reconstruct_silhouettes(
    front: PhotoSilhouette, side: PhotoSilhouette, height_m: float, backend, timings: dict | None = None,
    clothing: str = DEFAULT_CLOTHING,
) -> Result:
    """Checked silhouettes + height (m) -> :class:`Result` through ``backend``. ``clothing``:
    what the person wears (bodyshape/clothing.py); "fitted" corrects the body with fitted clothing's own
    correction and refits it under the allowance."""
    from bodyshape.body_model import get_body_model

    check_clothing(clothing)
    timings = dict(timings or {})
    t_check = time.perf_counter()
    checks = check_capture(front, side)
    t0 = time.perf_counter()
    timings["checks"] = t0 - t_check
    # Test-time augmentation: the model reads the pair four times (as taken and mirrored) in
    # one batch; the reported body is the mean shape, the four answers' spread sizes the
    # interval of each measurement (bodyshape/uncertainty.py).
    h = np.array([height_m], np.float32)
    variants = tta_inputs(front.silhouette[None], side.silhouette[None], h)
    shapes, verts = backend.reconstruct(*variants)
    t1 = time.perf_counter()
    tta = tta_measure(shapes, verts, h)
    # The reported body: the measurements corrected (bodyshape/correction.py) and, for fitted
    # clothing, the allowance taken off; the shape refitted to them, so mesh and numbers agree.
    new_shapes, meshes, reported = reported_bodies(tta.shape, h, tta.measurements, front.silhouette[None],
                                                   side.silhouette[None], get_correction(clothing), get_intervals().allowance(clothing))
    shape, vertices, point = new_shapes[0], meshes[0], reported[0]
    measurements = {n: float(v) for n, v in zip(MEASUREMENT_NAMES, point, strict=True)}
    low, high = get_intervals().bounds(point, tta.spread[0], any(not c.passed for c in checks), clothing)
    intervals = {n: (float(lo), float(hi)) for n, lo, hi in zip(MEASUREMENT_NAMES, low, high, strict=True)}
    t2 = time.perf_counter()
    timings.update(model=t1 - t0, measure=t2 - t1)
    return Result(
        front, side, height_m, shape, vertices, get_body_model().faces, measurements,
        backend.name, timings, checks, intervals, clothing,
    )  # fmt: skip


def reconstruct_photos(front_src, side_src, height_cm, backend, segmenter: Segmenter | None = None,
                       clothing: str = DEFAULT_CLOTHING) -> Result:  # fmt: skip
    """The whole path: height check, both photos -> silhouettes, model, measurements."""
    height_m = check_height_cm(height_cm)
    check_clothing(clothing)
    t0 = time.perf_counter()
    front, side = silhouettes_from_photos(front_src, side_src, segmenter)
    timings = {"photos": time.perf_counter() - t0, "rembg": front.timings["rembg"] + side.timings["rembg"]}
    return reconstruct_silhouettes(front, side, height_m, backend, timings, clothing)


# ----------------------------------------------------------------------------- presentation
@dataclass(frozen=True)
class MeasurementValue:
    """One measurement as people read it: its definition (label, ISO term, how to measure it
    yourself; from :data:`bodyshape.measurements.MEASUREMENTS`), its value and its interval."""

    spec: Measurement
    cm: float
    low_cm: float | None = None  # the 80% interval (bodyshape/uncertainty.py), if known
    high_cm: float | None = None

    @property
    def inches(self) -> float:
        return self.cm / CM_PER_INCH

    def value(self, units: str) -> float:
        """The value in ``units`` ("cm" or "in"), rounded to 1 decimal for tables."""
        return round(self.cm if units == "cm" else self.inches, 1)

    def interval(self, units: str) -> tuple[float, float] | None:
        """(low, high) in ``units``, rounded to 1 decimal, or None."""
        if self.low_cm is None or self.high_cm is None:
            return None
        k = 1.0 if units == "cm" else 1.0 / CM_PER_INCH
        return round(self.low_cm * k, 1), round(self.high_cm * k, 1)

    def range_text(self, units: str) -> str:
        """"92.1 – 99.8" for a table, "" without an interval (height: typed, not estimated)."""
        iv = self.interval(units)
        return "" if iv is None or iv[0] == iv[1] else f"{iv[0]:.1f} – {iv[1]:.1f}"


def measurement_values(
    measurements: dict[str, float], intervals: dict[str, tuple[float, float]] | None = None
) -> list[MeasurementValue]:
    """The measurements (metres) in the order of ``MEASUREMENT_NAMES``, each with its definition
    and, where ``intervals`` (metres) has it, its 80% interval."""
    out = []
    for m in MEASUREMENTS:
        if m.name in measurements:
            lo_hi = (intervals or {}).get(m.name)
            low, high = (None, None) if lo_hi is None else (lo_hi[0] * 100, lo_hi[1] * 100)
            out.append(MeasurementValue(m, measurements[m.name] * 100, low, high))
    return out


#: The page table's and CLI's column with each measurement's interval.
RANGE_HEADER = f"{COVERAGE:.0%} range"


def measurement_rows(
    measurements: dict[str, float], units: str = "cm", intervals: dict[str, tuple[float, float]] | None = None
) -> list[list]:
    """[[label, value, 80% range, how to measure it yourself], ...] for a table; ``units`` ("cm" or "in")."""
    if units not in ("cm", "in"):
        raise BodyShapeError(f"units must be 'cm' or 'in', got {units!r}")
    return [[v.spec.label, v.value(units), v.range_text(units), v.spec.how_to_measure]
            for v in measurement_values(measurements, intervals)]  # fmt: skip


def measurements_json(result: Result) -> dict:
    """The JSON download: values and 80% intervals in cm and in inches, each measurement's definition."""
    values = measurement_values(result.measurements, result.intervals)
    return {
        "height_input_cm": round(result.height_m * 100, 1),
        "clothing": {"declared": result.clothing, "meaning": CLOTHING[result.clothing]},
        "units": "measurements_cm: centimetres; measurements_in: inches (cm / 2.54)",
        "measurements_cm": {v.spec.name: round(v.cm, 2) for v in values},
        "measurements_in": {v.spec.name: round(v.inches, 2) for v in values},
        "intervals_80_cm": {v.spec.name: list(v.interval("cm")) for v in values if v.interval("cm")},
        "intervals_80_in": {v.spec.name: list(v.interval("in")) for v in values if v.interval("in")},
        "intervals_note": INTERVALS_NOTE,
        "definitions": {
            v.spec.name: {
                "label": v.spec.label,
                "iso_8559_1_term": v.spec.iso_term,
                "how_to_measure": v.spec.how_to_measure,
            }
            for v in values
        },
        "shape_parameters": [round(float(x), 5) for x in result.shape],
        "model": result.backend,
        "notes": MEASUREMENT_NOTES,
        "capture_warnings": result.warnings,
        "capture_checks": [c.as_json() for c in result.checks],
    }


def write_measurements_csv(
    measurements: dict[str, float], path: Path, intervals: dict[str, tuple[float, float]] | None = None
) -> None:
    """One row per measurement: key, label, cm, inches, the 80% interval in cm, ISO 8559-1 term, how to measure it."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["measurement", "label", "cm", "in", "low_80_cm", "high_80_cm", "iso_8559_1_term", "how_to_measure"])
        for v in measurement_values(measurements, intervals):
            iv = v.interval("cm") or ("", "")
            w.writerow([v.spec.name, v.spec.label, f"{v.cm:.1f}", f"{v.inches:.1f}", iv[0], iv[1], v.spec.iso_term,
                        v.spec.how_to_measure])  # fmt: skip


def write_outputs(result: Result, out_dir: str | Path, stem: str = "body") -> dict[str, Path]:
    """Write ``stem``.obj / .glb (mesh, metres) / _measurements.csv / _measurements.json."""
    import trimesh

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mesh = trimesh.Trimesh(result.vertices, result.faces, process=False)
    paths = {
        "obj": out_dir / f"{stem}.obj",
        "glb": out_dir / f"{stem}.glb",
        "csv": out_dir / f"{stem}_measurements.csv",
        "json": out_dir / f"{stem}_measurements.json",
    }
    mesh.export(paths["obj"], file_type="obj", include_normals=False, include_texture=False)
    mesh.export(paths["glb"], file_type="glb")
    write_measurements_csv(result.measurements, paths["csv"], result.intervals)
    paths["json"].write_text(json.dumps(measurements_json(result), indent=2))
    return paths


def mesh_figure(vertices: np.ndarray, faces: np.ndarray, title: str | None = None):
    """An interactive, shaded Plotly Mesh3d of a body (metres, Z up), seen from the front."""
    import plotly.graph_objects as go

    # Compact typed arrays for the browser (float32 vertices, uint16 faces): ~0.45 MB, not 1 MB.
    v = np.asarray(vertices, np.float32)
    f = np.asarray(faces)
    f = f.astype(np.uint16) if f.max() < 2**16 else f.astype(np.int32)
    mesh = go.Mesh3d(
        x=v[:, 0], y=v[:, 1], z=v[:, 2], i=f[:, 0], j=f[:, 1], k=f[:, 2],
        color="rgb(214,170,140)", flatshading=False,
        lighting=dict(ambient=0.45, diffuse=0.8, specular=0.15, roughness=0.6, fresnel=0.1),
        lightposition=dict(x=-100, y=-200, z=300),
        hoverinfo="skip", name="body",
    )  # fmt: skip
    axis = dict(visible=False, showbackground=False)
    fig = go.Figure(mesh)
    fig.update_layout(
        title=title,
        margin=dict(l=0, r=0, t=30 if title else 0, b=0),
        height=560,
        scene=dict(
            xaxis=axis, yaxis=axis, zaxis=axis, aspectmode="data",
            camera=dict(up=dict(x=0, y=0, z=1), eye=dict(x=0.45, y=-2.1, z=0.2),
                        center=dict(x=0, y=0, z=0)),
            dragmode="turntable",
        ),
        paper_bgcolor="rgba(0,0,0,0)",
    )  # fmt: skip
    return fig


def placeholder_figure():
    """An empty 3D scene for the page's first load: the browser loads plotly.js and sets up
    WebGL while the user picks photos, not after the button press."""
    return mesh_figure(
        np.zeros((3, 3), np.float32), np.array([[0, 1, 2]]), title="Your 3D body will appear here"
    )
