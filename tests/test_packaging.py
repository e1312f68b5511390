"""Packaging: the core package works without the stage extras, and the extras are declared.

The core (``pip install bodyshape``, no extras) must read the shipped weights, run the
network and measure a mesh with no Gradio, Triton client, rembg, ONNX or plotting
packages. The test proves it in a fresh interpreter in which those look not installed.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from bodyshape.paths import REPO_DIR, WEIGHTS_DIR

#: Packages that belong to an extra, never to the core.
EXTRA_ONLY = (
    "gradio", "gradio_client", "tritonclient", "pytriton", "rembg", "plotly", "trimesh",
    "matplotlib", "onnx", "onnxruntime",
)

_CORE_USE = f"""
import sys
BLOCKED = {EXTRA_ONLY!r}
for name in BLOCKED:  # as if not installed: `import x` fails, importlib.util.find_spec(x) is None
    sys.modules[name] = None

import numpy as np, torch
from bodyshape.body_model import get_body_model
from bodyshape.checkpoint import load_model
from bodyshape.measurements import get_measurer
from bodyshape.reconstruct import LocalPredictor, mesh_from_shape

net = load_model({str(WEIGHTS_DIR / "fused.safetensors")!r})
sil = np.zeros((1, *net.cfg.canvas_hw), np.uint8)
sil[:, 8:-8, 40:-40] = 255
shape = LocalPredictor().predict_shape(sil, sil, np.array([1.75], np.float32))
verts = mesh_from_shape(shape, np.array([1.75], np.float32))[0]
m = get_measurer()(verts)
assert abs(m["height"] - 1.75) < 1e-3, m
loaded = sorted(k for k, m in sys.modules.items() if k.split(".")[0] in BLOCKED and m is not None)
print("ok", loaded)
"""


def test_core_reads_weights_and_measures_without_any_extra():
    out = subprocess.run([sys.executable, "-c", _CORE_USE], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "ok []"


def test_extras_hold_the_heavy_packages_and_all_collects_them():
    project = tomllib.loads((REPO_DIR / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"]).lower()
    for pkg in ("gradio", "tritonclient", "rembg", "plotly", "trimesh", "matplotlib", "onnxruntime"):
        assert pkg not in core, f"{pkg} is a core dependency; it belongs to an extra"
    extras = project["optional-dependencies"]
    assert set(extras["all"][0].split("[")[1].rstrip("]").split(",")) == {"train", "export", "serve", "demo"}
    assert "bodyshape[serve]" in extras["demo"] and "bodyshape[export]" in extras["serve"]
    assert "3.12" in project["requires-python"] or "<3.13" in project["requires-python"]
    makefile = Path(REPO_DIR / "Makefile").read_text()
    assert '".[all,test]"' in makefile  # make demo / make test install every extra
