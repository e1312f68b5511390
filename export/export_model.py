"""``bodyshape export``: fused weights -> ONNX (parity) -> TensorRT (GPU only, parity) -> Triton repository.

Deterministic: the same weights file gives byte-identical ``model.onnx`` and configs (same torch
version), so the committed repository can be checked against the shipped weights.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from bodyshape.errors import BodyShapeError
from bodyshape.paths import MODEL_REPOSITORY, WEIGHTS_DIR


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights", type=Path, default=WEIGHTS_DIR / "fused.safetensors", help="fused model file"
    )
    parser.add_argument("--out", type=Path, default=MODEL_REPOSITORY, help="Triton model repository to write")
    parser.add_argument(
        "--tensorrt",
        choices=("auto", "off", "require"),
        default="auto",
        help="auto: build the TensorRT plan where TensorRT + a GPU exist, else skip with a message; "
        "require: fail if it cannot be built",
    )
    parser.add_argument("--trt-precision", choices=("fp16", "fp32"), default="fp16")


def export_all(
    weights: Path, out: Path, tensorrt: str = "auto", trt_precision: str = "fp16", log=print
) -> dict:
    """Run the whole export; returns the ``export_info`` written next to the ONNX model."""
    from bodyshape.checkpoint import load_model, read_metadata
    from export import onnx_export
    from export.triton_repository import write_repository

    cfg, meta = read_metadata(weights)
    net = load_model(weights)
    log(
        f"weights: {weights} (trained: {meta.get('trained', 'unknown')}), config: {json.dumps(cfg.to_dict())}"
    )
    hw = tuple(cfg.canvas_hw)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = onnx_export.export_onnx(net, Path(tmp) / "model.onnx")
        parity = onnx_export.check_parity(net, onnx_path)
        log(f"ONNX: {onnx_path.stat().st_size / 1e6:.1f} MB, opset {onnx_export.OPSET}, {parity}")
        if not parity.ok:
            raise BodyShapeError(f"ONNX export does not match PyTorch: {parity}")
        plan_path, trt_info = _tensorrt_step(net, onnx_path, Path(tmp), out, tensorrt, trt_precision, hw, log)
        info = {
            "weights_file": weights.name,
            "weights_sha256": onnx_export.sha256(weights),
            "model_onnx_sha256": onnx_export.sha256(onnx_path),
            "trained": meta.get("trained"),
            "net_config": cfg.to_dict(),
            "onnx_parity_max_abs_diff": float(f"{parity.max_abs_diff:.3g}"),
            "tensorrt": trt_info if trt_info.get("built") else {"built": False},
        }
        write_repository(out, onnx_path, info, hw=hw, plan_path=plan_path)

    produced = ["body_shape/1/model.onnx (+ Python-backend model.py)", "body_mesh", "body_pipeline"]
    if plan_path is not None:
        produced.append(f"body_shape/1/model.plan (TensorRT {trt_precision})")
    log(f"Triton repository written to {out}: {', '.join(produced)}")
    return info


def _tensorrt_step(
    net, onnx_path: Path, tmp: Path, out: Path, tensorrt: str, precision: str, hw: tuple[int, int], log
) -> tuple[Path | None, dict]:
    """(the TensorRT plan built in ``tmp`` or None, what happened for ``export_info``).

    Where no engine can be built here, says so and prints the ``trtexec`` line for the
    repository's final paths (``out``), unless ``tensorrt == "require"``: then it fails.
    """
    from export import tensorrt_build

    if tensorrt == "off":
        return None, {"built": False, "skipped": "disabled with --tensorrt off"}
    spec = tensorrt_build.EngineSpec(hw=hw)
    result = tensorrt_build.build_engine(onnx_path, tmp / "model.plan", precision=precision, spec=spec)
    if not result.built:
        if tensorrt == "require":
            raise BodyShapeError(f"TensorRT engine not built: {result.skipped_reason}")
        log(f"TensorRT: SKIPPED, no engine was built: {result.skipped_reason}")
        log("  to build it on a GPU host (NGC TensorRT container), run:")
        final_onnx, final_plan = out / "body_shape/1/model.onnx", out / "body_shape/1/model.plan"
        log("  " + tensorrt_build.trtexec_command(final_onnx, final_plan, precision=precision, spec=spec))
        return None, {"built": False, "skipped": result.skipped_reason}
    diff = tensorrt_build.check_parity(result.plan, net)
    bound = tensorrt_build.PARITY_ATOL[precision]
    log(f"TensorRT {precision}: engine built, max |TensorRT - PyTorch| = {diff:.3g} (bound {bound:g})")
    if diff > bound:
        raise BodyShapeError(f"TensorRT engine does not match PyTorch: {diff:.3g} > {bound:g}")
    return result.plan, {"built": True, "precision": precision, "max_abs_diff": diff}


def run(args: argparse.Namespace) -> int:
    export_all(args.weights, args.out, tensorrt=args.tensorrt, trt_precision=args.trt_precision)
    return 0
