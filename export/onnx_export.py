"""Fused PyTorch model -> ONNX with UINT8 silhouettes in, a parity check against PyTorch.

The served graph takes what the client really has, so nothing but bytes crosses the wire:

    FRONT  uint8   (B, 128, 96)  normalised silhouette: a coverage canvas, 0..255 per pixel
    SIDE   uint8   (B, 128, 96)
    HEIGHT float32 (B, 1)        metres
    SHAPE  float32 (B, N_SHAPE)  shape parameters (see ``bodyshape.body_model.SHAPE_LABELS``)

The conversion to {0, 1} network inputs happens inside the graph: the canvas is read at
``SUBPIXEL_PHASES`` sub-pixel phases (``bodyshape.nets.subpixel_looks``; look 0 is the
training data's ``bodyshape.silhouette.to_network_input``) and the shapes are averaged
(``bodyshape.nets.SubpixelReader``). So a uint8 request is 4x smaller than float32 and the
server cannot read a canvas differently from the in-process model.
The batch axis is dynamic. Batch-norm is folded into the convolutions (eval-mode export).
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bodyshape.errors import BodyShapeError
from bodyshape.nets import BodyShapeNet, SubpixelReader
from bodyshape.silhouette import SUBPIXEL_PHASES

INPUT_NAMES = ("FRONT", "SIDE", "HEIGHT")
OUTPUT_NAMES = ("SHAPE",)
OPSET = 17
#: |ONNX Runtime - PyTorch| bound on the shape parameters (FP32 on CPU; observed ~1e-6).
PARITY_ATOL = 1e-4


class UInt8SilhouetteModel(nn.Module):
    """``BodyShapeNet`` with uint8 (B, H, W) coverage canvases and (B, 1) heights in: the
    :class:`bodyshape.nets.SubpixelReader` of the network."""

    def __init__(self, net: BodyShapeNet) -> None:
        super().__init__()
        self.net = net
        self.reader = SubpixelReader(net)

    def forward(self, front: torch.Tensor, side: torch.Tensor, height: torch.Tensor) -> torch.Tensor:
        return self.reader(front, side, height.reshape(-1))


def example_inputs(net: BodyShapeNet, batch: int = 2, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Deterministic test inputs: random ellipse-ish blobs as coverage canvases (uint8, soft
    edges: each pixel the share of a 4x4 grid of samples inside) and heights (B, 1)."""
    h, w = net.cfg.canvas_hw
    rng = np.random.default_rng(seed)
    sub = 4
    yy, xx = (np.mgrid[0 : h * sub, 0 : w * sub] + 0.5) / sub
    views = []
    for _ in range(2):
        cy = rng.uniform(0.4, 0.6, (batch, 1, 1)) * h
        cx = rng.uniform(0.4, 0.6, (batch, 1, 1)) * w
        ry = rng.uniform(0.3, 0.45, (batch, 1, 1)) * h
        rx = rng.uniform(0.1, 0.3, (batch, 1, 1)) * w
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        cover = inside.reshape(batch, h, sub, w, sub).mean((2, 4))
        views.append(np.rint(cover * 255).astype(np.uint8))
    height = rng.uniform(1.5, 1.95, (batch, 1)).astype(np.float32)
    return views[0], views[1], height


def export_onnx(net: BodyShapeNet, path: str | Path) -> Path:
    """Write the uint8-input ONNX graph of ``net`` (dynamic batch) to ``path``.

    The bytes depend only on the weights and the torch version (the export is run twice in
    the tests to check that).
    """
    if net.cfg.views != ("front", "side"):
        raise BodyShapeError(f"only the fused (front + side) model is served, got views {net.cfg.views}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = UInt8SilhouetteModel(net.eval()).eval()
    f, s, h = (torch.from_numpy(a) for a in example_inputs(net, batch=2))
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            wrapper,
            (f, s, h),
            buf,
            dynamo=False,  # TorchScript exporter: no onnxscript dependency, stable node names
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={n: {0: "batch"} for n in INPUT_NAMES + OUTPUT_NAMES},
            opset_version=OPSET,
            do_constant_folding=True,
        )
    import onnx

    model = onnx.load_from_string(buf.getvalue())
    # The mean over the sub-pixel looks (a Reshape to (phases, -1, n)) leaves the exporter
    # unsure of the output's width; it is the shape vector's length.
    width = model.graph.output[0].type.tensor_type.shape.dim[1]
    width.ClearField("dim_param")
    width.dim_value = net.cfg.n_shape
    onnx.checker.check_model(model)
    model.producer_name = "bodyshape"
    model.doc_string = (
        "bodyshape fused front+side net. FRONT/SIDE uint8 (B,H,W) coverage canvases 0..255, read at "
        f"{SUBPIXEL_PHASES} sub-pixel phases, HEIGHT float32 (B,1) m "
        f"-> SHAPE float32 (B,{net.cfg.n_shape}); labels: {','.join(net.cfg.shape_labels)}"
    )
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(model.SerializeToString())
    tmp.replace(path)
    return path


def ort_session(path: str | Path, intra_op_threads: int = 0, providers=("CPUExecutionProvider",)):
    """ONNX Runtime session with all graph optimisations; 0 threads = ORT's default.

    ``providers``: ONNX Runtime's execution providers, e.g. ``("CUDAExecutionProvider",
    "CPUExecutionProvider")`` with onnxruntime-gpu (``bodyshape bench --device gpu``).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), sess_options=opts, providers=list(providers))


@dataclass
class Parity:
    max_abs_diff: float
    batch_sizes: tuple[int, ...]
    atol: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.atol

    def __str__(self) -> str:
        verdict = "OK" if self.ok else "FAILED"
        return (
            f"parity {verdict}: max |ONNX Runtime - PyTorch| = {self.max_abs_diff:.3g} "
            f"(bound {self.atol:g}, batch sizes {list(self.batch_sizes)})"
        )


@torch.no_grad()
def check_parity(
    net: BodyShapeNet, onnx_path: str | Path, batch_sizes=(1, 7, 64), atol: float = PARITY_ATOL
) -> Parity:
    """Max abs difference between ONNX Runtime and PyTorch eager on the same uint8 inputs."""
    sess = ort_session(onnx_path)
    wrapper = UInt8SilhouetteModel(net.eval()).eval()
    worst = 0.0
    for i, b in enumerate(batch_sizes):
        f, s, h = example_inputs(net, batch=b, seed=100 + i)
        (got,) = sess.run(None, {"FRONT": f, "SIDE": s, "HEIGHT": h})
        ref = wrapper(torch.from_numpy(f), torch.from_numpy(s), torch.from_numpy(h)).numpy()
        if got.shape != ref.shape:
            raise BodyShapeError(f"ONNX output shape {got.shape} != PyTorch {ref.shape}")
        worst = max(worst, float(np.abs(got - ref).max()))
    return Parity(worst, tuple(batch_sizes), atol)


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
