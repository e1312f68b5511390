"""Export: ONNX parity with PyTorch, TensorRT (skipped without TensorRT + GPU), the Triton repository."""

import json

import numpy as np
import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from bodyshape.body_model import N_VERTICES
from bodyshape.checkpoint import load_model
from bodyshape.errors import BodyShapeError
from bodyshape.paths import MODEL_REPOSITORY, WEIGHTS_DIR
from bodyshape.silhouette import CANVAS_HW, SUBPIXEL_PHASES, to_network_input
from export import onnx_export, tensorrt_build
from export.export_model import export_all
from export.triton_repository import (
    GPU_CONFIG_NAME,
    TENSORRT_CONFIG_NAME,
    ServingConfig,
    body_shape_config,
    validate_repository,
)

WEIGHTS = WEIGHTS_DIR / "fused.safetensors"


@pytest.fixture(scope="module")
def net():
    return load_model(WEIGHTS)


@pytest.fixture(scope="module")
def onnx_path(net, tmp_path_factory):
    return onnx_export.export_onnx(net, tmp_path_factory.mktemp("onnx") / "model.onnx")


def test_onnx_matches_pytorch(net, onnx_path):
    parity = onnx_export.check_parity(net, onnx_path, batch_sizes=(1, 5, 64))
    print(parity)
    assert parity.max_abs_diff < 1e-4, parity


def test_onnx_reads_coverage_canvases_at_subpixel_phases(net, onnx_path):
    """The graph's uint8 input is a coverage canvas: its answer is the network's mean over the
    canvas read at SUBPIXEL_PHASES phases, each pixel body where the moved body covers at least
    half of it (written out here in exact integers, independently of the graph's arithmetic)."""
    rng = np.random.default_rng(1)
    f, s, h = onnx_export.example_inputs(net, batch=4, seed=3)
    f = np.where(f > 0, rng.integers(1, 256, f.shape), 0).astype(np.uint8)  # any coverage value
    (got,) = onnx_export.ort_session(onnx_path).run(None, {"FRONT": f, "SIDE": s, "HEIGHT": h})

    def look(canvas: np.ndarray, k: int) -> torch.Tensor:
        """Coverage of the body moved k/P px, (1 - k/P) c + (k/P) left >= 1/2, times 2 * 255 * P."""
        c = canvas.astype(np.int64)
        left = np.concatenate([np.zeros_like(c[..., :1]), c[..., :-1]], -1)
        n = SUBPIXEL_PHASES
        return torch.from_numpy((2 * ((n - k) * c + k * left) >= 255 * n).astype(np.float32))[:, None]

    with torch.no_grad():
        ref = np.mean([net(look(f, k), look(s, k), torch.from_numpy(h.reshape(-1))).numpy()
                       for k in range(SUBPIXEL_PHASES)], axis=0)  # fmt: skip
    assert np.abs(got - ref).max() < 1e-4
    # Look 0 is the training data's 0/1 body.
    assert np.array_equal(look(f, 0)[:, 0].numpy(), to_network_input(f))


def test_onnx_batch_equals_single(onnx_path, net):
    sess = onnx_export.ort_session(onnx_path)
    f, s, h = onnx_export.example_inputs(net, batch=6, seed=4)
    (batch,) = sess.run(None, {"FRONT": f, "SIDE": s, "HEIGHT": h})
    single = np.concatenate(
        [
            sess.run(None, {"FRONT": f[i : i + 1], "SIDE": s[i : i + 1], "HEIGHT": h[i : i + 1]})[0]
            for i in range(6)
        ]
    )
    assert np.abs(batch - single).max() < 1e-5


def test_onnx_export_is_deterministic(net, onnx_path, tmp_path):
    again = onnx_export.export_onnx(net, tmp_path / "again.onnx")
    assert onnx_export.sha256(again) == onnx_export.sha256(onnx_path)


@pytest.mark.skipif(
    tensorrt_build.tensorrt_unavailable_reason() is not None,
    reason=f"TensorRT engine build needs TensorRT + a GPU: {tensorrt_build.tensorrt_unavailable_reason()}",
)
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_engine_matches_pytorch(net, onnx_path, tmp_path, precision):
    result = tensorrt_build.build_engine(onnx_path, tmp_path / "model.plan", precision=precision)
    assert result.built and result.plan.stat().st_size > 0
    diff = tensorrt_build.check_parity(result.plan, net)
    assert diff < tensorrt_build.PARITY_ATOL[precision], diff


def test_tensorrt_never_pretends(onnx_path, tmp_path):
    """Without TensorRT + GPU: no plan, a reason, and the trtexec line for a GPU host."""
    if tensorrt_build.tensorrt_unavailable_reason() is None:
        pytest.skip("TensorRT is available here: the engine test covers it")
    result = tensorrt_build.build_engine(onnx_path, tmp_path / "model.plan")
    assert not result.built and result.skipped_reason
    assert not (tmp_path / "model.plan").exists()
    cmd = tensorrt_build.trtexec_command(onnx_path, tmp_path / "model.plan")
    for part in (
        "trtexec",
        "--minShapes=FRONT:1x128x96",
        "--maxShapes=FRONT:64x128x96",
        "HEIGHT:64x1",
        "--fp16",
    ):
        assert part in cmd


def test_engine_spec_is_the_served_batch_range_and_canvas():
    spec = tensorrt_build.EngineSpec()
    assert spec.max_batch == ServingConfig().max_batch_size and spec.hw == CANVAS_HW
    assert spec.shapes()["HEIGHT"] == ((1, 1), (8, 1), (64, 1))
    with pytest.raises(BodyShapeError, match="min_batch <= opt_batch"):
        tensorrt_build.EngineSpec(min_batch=9, opt_batch=8)


def _parse_config(path):
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_export_writes_a_valid_repository(tmp_path, capsys):
    out = tmp_path / "repo"
    info = export_all(WEIGHTS, out, tensorrt="auto")
    log = capsys.readouterr().out
    assert "parity OK" in log
    if not info["tensorrt"]["built"]:
        assert "TensorRT: SKIPPED" in log and "trtexec" in log
        assert not (out / "body_shape/1/model.plan").exists()
    validate_repository(out)
    shape = _parse_config(out / "body_shape/config.pbtxt")
    assert shape.backend == "python" and shape.max_batch_size == 64
    assert [(i.name, i.data_type, list(i.dims)) for i in shape.input] == [
        ("FRONT", model_config_pb2.TYPE_UINT8, list(CANVAS_HW)),
        ("SIDE", model_config_pb2.TYPE_UINT8, list(CANVAS_HW)),
        ("HEIGHT", model_config_pb2.TYPE_FP32, [1]),
    ]
    assert shape.HasField("dynamic_batching")
    trt = _parse_config(out / f"body_shape/configs/{TENSORRT_CONFIG_NAME}.pbtxt")
    assert trt.platform == "tensorrt_plan" and list(trt.input) == list(shape.input)
    mesh = _parse_config(out / "body_mesh/config.pbtxt")
    assert list(mesh.output[0].dims) == [N_VERTICES, 3]
    pipe = _parse_config(out / "body_pipeline/config.pbtxt")
    assert pipe.platform == "ensemble"
    assert [s.model_name for s in pipe.ensemble_scheduling.step] == ["body_shape", "body_mesh"]
    assert (out / "body_pipeline/1").is_dir()


def _parameters(config) -> dict[str, str]:
    return {k: v.string_value for k, v in config.parameters.items()}


@pytest.mark.parametrize("model", ["body_shape", "body_mesh"])
def test_gpu_config_is_well_formed(model):
    """The committed ``gpu`` variant (bundled server on a GPU host): the CPU config's model, I/O
    and batching, on KIND_GPU instances, with ONNX Runtime's CUDA provider / Anny on CUDA.
    Serving it needs a GPU: tests/test_triton.py::test_gpu_config_serves_on_the_gpu."""
    cpu = _parse_config(MODEL_REPOSITORY / model / "config.pbtxt")
    gpu = _parse_config(MODEL_REPOSITORY / model / "configs" / f"{GPU_CONFIG_NAME}.pbtxt")
    assert gpu.name == cpu.name == model and gpu.backend == cpu.backend == "python"
    assert list(gpu.input) == list(cpu.input) and list(gpu.output) == list(cpu.output)
    assert gpu.max_batch_size == cpu.max_batch_size and gpu.HasField("dynamic_batching")
    kinds = model_config_pb2.ModelInstanceGroup
    assert [(g.kind, g.count >= 1) for g in gpu.instance_group] == [(kinds.KIND_GPU, True)]
    assert all(g.kind == kinds.KIND_CPU for g in cpu.instance_group)
    params, cpu_params = _parameters(gpu), _parameters(cpu)
    assert params.keys() == cpu_params.keys()
    if model == "body_shape":
        assert params["EXECUTION_PROVIDER"] == "CUDAExecutionProvider"
        assert cpu_params["EXECUTION_PROVIDER"] == "CPUExecutionProvider"
        assert {k: v for k, v in params.items() if "HEIGHT" in k} == {
            k: v for k, v in cpu_params.items() if "HEIGHT" in k
        }
    else:
        assert (params["DEVICE"], cpu_params["DEVICE"]) == ("cuda", "cpu")


def test_serving_config_refuses_an_unknown_device():
    with pytest.raises(BodyShapeError, match="'cpu' or 'gpu'"):
        body_shape_config(CANVAS_HW, ServingConfig(), device="cuda")


#: Batch-norm folding rounds differently on other CPUs (observed: the last bit of some
#: folded convolution weights, 2.4e-7, between an Intel Xeon and an AMD EPYC with the same
#: torch): the committed model.onnx is compared by graph and values, everything else by bytes.
ONNX_WEIGHT_ATOL = 1e-6
#: export_info.json fields that follow those last bits.
ROUNDING_FIELDS = ("model_onnx_sha256", "onnx_parity_max_abs_diff")


def _same_onnx_graph(committed, fresh):
    import onnx
    from onnx import numpy_helper

    a, b = onnx.load(str(committed)), onnx.load(str(fresh))
    assert [(n.op_type, list(n.input), list(n.output)) for n in a.graph.node] == [
        (n.op_type, list(n.input), list(n.output)) for n in b.graph.node
    ], "model.onnx: another graph: run `bodyshape export`"
    wa = {i.name: numpy_helper.to_array(i) for i in a.graph.initializer}
    wb = {i.name: numpy_helper.to_array(i) for i in b.graph.initializer}
    assert wa.keys() == wb.keys()
    for name, w in wa.items():
        assert w.dtype == wb[name].dtype and w.shape == wb[name].shape, name
        assert np.allclose(w, wb[name], rtol=0, atol=ONNX_WEIGHT_ATOL), f"model.onnx {name} differs"


def test_committed_repository_is_up_to_date(tmp_path):
    """model_repository/ is what `bodyshape export` writes from the shipped weights: byte for
    byte, but for the last bits of model.onnx's folded weights (see ONNX_WEIGHT_ATOL)."""
    info = json.loads((MODEL_REPOSITORY / "body_shape/1/export_info.json").read_text())
    assert info["weights_sha256"] == onnx_export.sha256(WEIGHTS), (
        f"{MODEL_REPOSITORY} was exported from other weights than {WEIGHTS}: run `bodyshape export`"
    )
    assert info["model_onnx_sha256"] == onnx_export.sha256(MODEL_REPOSITORY / "body_shape/1/model.onnx")
    out = export_all(WEIGHTS, tmp_path / "repo", tensorrt="off", log=lambda *_: None) and tmp_path / "repo"
    for f in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = f.relative_to(out)
        committed = MODEL_REPOSITORY / rel
        if rel.name == "model.onnx":
            _same_onnx_graph(committed, f)
        elif rel.name == "export_info.json":
            fresh = json.loads(f.read_text())
            assert {k: v for k, v in info.items() if k not in ROUNDING_FIELDS} == {
                k: v for k, v in fresh.items() if k not in ROUNDING_FIELDS
            }, f"{rel} differs: run `bodyshape export`"
        else:
            assert committed.read_bytes() == f.read_bytes(), f"{rel} differs: run `bodyshape export`"


def test_local_predictor_reads_in_bounded_batches(monkeypatch):
    """``LocalPredictor`` runs the network a few canvases at a time (each is SUBPIXEL_PHASES
    looks): the answer is the one of a single call over the whole batch, and none is none."""
    from bodyshape.body_model import N_SHAPE
    from bodyshape.reconstruct import LocalPredictor

    local = LocalPredictor()
    f, s, h = onnx_export.example_inputs(local.model, batch=5, seed=8)
    whole = local.predict_shape(f, s, h.reshape(-1))
    monkeypatch.setattr(LocalPredictor, "BATCH", 2)
    assert np.abs(local.predict_shape(f, s, h.reshape(-1)) - whole).max() < 1e-5
    assert local.predict_shape(f[:0], s[:0], h.reshape(-1)[:0]).shape == (0, N_SHAPE)
