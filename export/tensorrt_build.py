"""ONNX -> TensorRT engine (``model.plan``) with the documented ``tensorrt`` Python API.

TensorRT needs an NVIDIA GPU and NVIDIA's own package index (``pip install .[tensorrt]``
from https://pypi.nvidia.com, or an NGC TensorRT / Triton container). Where ``import
tensorrt`` fails or no GPU is visible, :func:`build_engine` builds nothing and says so;
:func:`trtexec_command` gives the equivalent command for the NGC TensorRT container.
Nothing here ever reports an engine it did not build.

The engine has one optimisation profile (:class:`EngineSpec`): batch 1..64 (the served
``max_batch_size``), tuned for 8. Inputs/outputs are those of :mod:`export.onnx_export` (uint8 silhouettes).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bodyshape.errors import BodyShapeError
from bodyshape.silhouette import CANVAS_HW
from export.triton_repository import ServingConfig

#: Parity bounds against PyTorch on the shape parameters.
PARITY_ATOL = {"fp32": 1e-3, "fp16": 2e-2}


@dataclass
class TensorRTResult:
    """What the TensorRT step did. ``plan`` is None when no engine was built."""

    plan: Path | None
    skipped_reason: str | None = None
    max_abs_diff: float | None = None
    precision: str = "fp16"
    notes: list[str] = field(default_factory=list)

    @property
    def built(self) -> bool:
        return self.plan is not None


def tensorrt_unavailable_reason() -> str | None:
    """None when TensorRT and a CUDA GPU are usable here, else a one-line reason."""
    try:
        import tensorrt  # noqa: F401
    except Exception as e:  # ImportError, or a broken install whose libraries fail to load
        return (
            f"the tensorrt Python package is not importable ({type(e).__name__}: {e}); "
            "install it from NVIDIA's index (pip install '.[tensorrt]' "
            "--extra-index-url https://pypi.nvidia.com) or use an NGC TensorRT container"
        )
    try:
        import torch

        if not torch.cuda.is_available():
            return "no CUDA GPU is visible (torch.cuda.is_available() is False); TensorRT needs one"
    except Exception as e:
        return f"cannot query CUDA through torch: {e}"
    return None


@dataclass(frozen=True)
class EngineSpec:
    """The engine's one optimisation profile (batch ``min_batch..max_batch``, tuned for
    ``opt_batch``; the maximum is the served ``max_batch_size``, the canvas the network's
    input) and the builder's workspace."""

    min_batch: int = 1
    opt_batch: int = 8
    max_batch: int = ServingConfig.max_batch_size
    hw: tuple[int, int] = CANVAS_HW
    workspace_mib: int = 1024

    def __post_init__(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise BodyShapeError(
                "need 1 <= min_batch <= opt_batch <= max_batch, "
                f"got {self.min_batch, self.opt_batch, self.max_batch}"
            )

    def shapes(self) -> dict[str, tuple]:
        """{input: (min shape, opt shape, max shape)}."""
        h, w = self.hw
        batches = (self.min_batch, self.opt_batch, self.max_batch)
        return {
            name: tuple((b, h, w) if name != "HEIGHT" else (b, 1) for b in batches)
            for name in ("FRONT", "SIDE", "HEIGHT")
        }


def trtexec_command(
    onnx_path: str | Path,
    plan_path: str | Path,
    precision: str = "fp16",
    spec: EngineSpec = EngineSpec(),
) -> str:
    """The ``trtexec`` line (NGC ``nvcr.io/nvidia/tensorrt`` container) that builds the same engine."""
    shapes = spec.shapes()

    def arg(i: int) -> str:
        return ",".join(f"{n}:{'x'.join(map(str, s[i]))}" for n, s in shapes.items())

    parts = [
        "trtexec",
        f"--onnx={onnx_path}",
        f"--saveEngine={plan_path}",
        f"--minShapes={arg(0)}",
        f"--optShapes={arg(1)}",
        f"--maxShapes={arg(2)}",
        f"--memPoolSize=workspace:{spec.workspace_mib}",
    ]
    if precision == "fp16":
        parts.append("--fp16")
    return " ".join(shlex.quote(p) for p in parts)


def build_engine(
    onnx_path: str | Path,
    plan_path: str | Path,
    precision: str = "fp16",
    spec: EngineSpec = EngineSpec(),
) -> TensorRTResult:
    """Build and serialise a TensorRT engine; skip (``plan=None``) with a reason where impossible."""
    if precision not in PARITY_ATOL:
        raise BodyShapeError(f"precision must be one of {sorted(PARITY_ATOL)}, got {precision!r}")
    reason = tensorrt_unavailable_reason()
    if reason:
        return TensorRTResult(plan=None, skipped_reason=reason, precision=precision)

    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # TensorRT 10: networks are always explicit-batch (the flag is deprecated and 0 is right).
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BodyShapeError(f"TensorRT could not parse {onnx_path}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace_mib << 20)
    if precision == "fp16":
        if not builder.platform_has_fast_fp16:
            raise BodyShapeError("this GPU has no fast FP16; build with --trt-precision fp32")
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in spec.shapes().items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BodyShapeError("TensorRT failed to build the engine (see the TensorRT log above)")
    plan_path = Path(plan_path)
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    plan_path.write_bytes(bytes(serialized))
    return TensorRTResult(plan=plan_path, precision=precision)


def run_engine(plan_path: str | Path, front: np.ndarray, side: np.ndarray, height: np.ndarray) -> np.ndarray:
    """Run a serialised engine once on the GPU (buffers are torch CUDA tensors)."""
    import tensorrt as trt
    import torch

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(Path(plan_path).read_bytes())
    context = engine.create_execution_context()
    dev = torch.device("cuda")
    inputs = {
        "FRONT": torch.from_numpy(np.ascontiguousarray(front)).to(dev),
        "SIDE": torch.from_numpy(np.ascontiguousarray(side)).to(dev),
        "HEIGHT": torch.from_numpy(np.ascontiguousarray(height, dtype=np.float32)).to(dev),
    }
    for name, t in inputs.items():
        context.set_input_shape(name, tuple(t.shape))
        context.set_tensor_address(name, t.data_ptr())
    out = torch.empty(tuple(context.get_tensor_shape("SHAPE")), dtype=torch.float32, device=dev)
    context.set_tensor_address("SHAPE", out.data_ptr())
    stream = torch.cuda.Stream()
    if not context.execute_async_v3(stream.cuda_stream):
        raise BodyShapeError("TensorRT execution failed")
    stream.synchronize()
    return out.cpu().numpy()


def check_parity(plan_path: str | Path, net, batch_sizes=(1, 8, 64)) -> float:
    """Max |TensorRT - PyTorch| over a few batch sizes (same uint8 inputs as the ONNX check)."""
    import torch

    from export.onnx_export import UInt8SilhouetteModel, example_inputs

    wrapper = UInt8SilhouetteModel(net.eval()).eval()
    worst = 0.0
    for i, b in enumerate(batch_sizes):
        f, s, h = example_inputs(net, batch=b, seed=200 + i)
        got = run_engine(plan_path, f, s, h)
        with torch.no_grad():
            ref = wrapper(torch.from_numpy(f), torch.from_numpy(s), torch.from_numpy(h)).numpy()
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst
