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

from bodyshape.errors import BodyShapeError
from bodyshape.photo import PhotoSilhouette, Segmenter, check_view_pair, get_segmenter, photo_to_silhouette
from bodyshape.reconstruct import check_height_cm

#: Human labels, in table order; values are metres in ``measure()``'s output.
MEASUREMENT_LABELS: dict[str, str] = {
    "height": "Height",
    "chest": "Chest girth",
    "waist": "Waist girth",
    "hip": "Hip girth",
    "neck": "Neck girth",
    "thigh": "Thigh girth",
    "upper_arm": "Upper-arm girth",
    "inseam": "Inseam (crotch height)",
    "shoulder": "Shoulder width",
    "arm_length": "Arm length",
}
CM_PER_INCH = 2.54


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


def silhouettes_from_photos(front_src, side_src, segmenter: Segmenter | None = None):
    """Both photos -> (front, side) :class:`PhotoSilhouette`, checked as a pair."""
    seg = segmenter or get_segmenter()
    front = photo_to_silhouette(front_src, "front", seg)
    side = photo_to_silhouette(side_src, "side", seg)
    check_view_pair(front, side)
    return front, side


def reconstruct_silhouettes(
    front: PhotoSilhouette, side: PhotoSilhouette, height_m: float, backend, timings: dict | None = None
) -> Result:
    """Checked silhouettes + height (m) -> :class:`Result` through ``backend``."""
    from bodyshape.body_model import get_body_model
    from bodyshape.measurements import measure

    timings = dict(timings or {})
    t0 = time.perf_counter()
    shape, verts = backend.reconstruct(
        front.silhouette[None], side.silhouette[None], np.array([height_m], np.float32)
    )
    t1 = time.perf_counter()
    vertices = np.asarray(verts[0], np.float32)
    measurements = measure(vertices)
    t2 = time.perf_counter()
    timings.update(model=t1 - t0, measure=t2 - t1)
    return Result(
        front, side, height_m, np.asarray(shape[0]), vertices, get_body_model().faces, measurements,
        backend.name, timings,
    )  # fmt: skip


def reconstruct_photos(front_src, side_src, height_cm, backend, segmenter: Segmenter | None = None) -> Result:
    """The whole path: height check, both photos -> silhouettes, model, measurements."""
    height_m = check_height_cm(height_cm)
    t0 = time.perf_counter()
    front, side = silhouettes_from_photos(front_src, side_src, segmenter)
    timings = {"photos": time.perf_counter() - t0, "rembg": front.timings["rembg"] + side.timings["rembg"]}
    return reconstruct_silhouettes(front, side, height_m, backend, timings)


# ----------------------------------------------------------------------------- presentation
def measurement_rows(measurements: dict[str, float], units: str = "cm") -> list[list]:
    """[[label, value], ...] for a table; ``units`` ("cm" or "in") is the value's unit."""
    if units not in ("cm", "in"):
        raise BodyShapeError(f"units must be 'cm' or 'in', got {units!r}")
    rows = []
    for key, label in MEASUREMENT_LABELS.items():
        if key not in measurements:
            continue
        cm = measurements[key] * 100
        rows.append([label, round(cm if units == "cm" else cm / CM_PER_INCH, 1)])
    return rows


def measurements_json(result: Result) -> dict:
    return {
        "height_input_cm": round(result.height_m * 100, 1),
        "measurements_cm": {k: round(v * 100, 2) for k, v in result.measurements.items()},
        "shape_parameters": [round(float(x), 5) for x in result.shape],
        "model": result.backend,
        "notes": "girths are convex-hull (tape-measure) perimeters on the reconstructed rest-pose mesh",
    }


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
    with open(paths["csv"], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["measurement", "cm", "in"])
        for key, label in MEASUREMENT_LABELS.items():
            if key in result.measurements:
                cm = result.measurements[key] * 100
                w.writerow([label, f"{cm:.1f}", f"{cm / CM_PER_INCH:.1f}"])
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
