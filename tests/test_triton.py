"""The real bundled Triton server on the committed repository: parity, bad inputs, perf_analyzer.

One server for the module (about 10 s to start with a warm Anny cache, ~90 s cold).
"""

import json
import os
import shutil
import signal
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp

from bodyshape.body_model import N_VERTICES
from bodyshape.errors import BodyShapeError
from bodyshape.paths import MODEL_REPOSITORY
from bodyshape.reconstruct import LocalPredictor, mesh_from_shape
from bodyshape.silhouette import CANVAS_HW
from bodyshape.triton_client import TritonInferenceError, TritonPredictor, TritonUnavailableError
from bodyshape.triton_server import BundledTriton, TritonServerError, free_port
from export.onnx_export import example_inputs
from export.triton_repository import GPU_CONFIG_NAME, ServingConfig, body_shape_config, write_repository

SHAPE_ATOL = 1e-4  # shape parameters, Triton (ONNX Runtime) vs in-process PyTorch
VERTEX_ATOL = 1e-4  # metres (0.1 mm)


@pytest.fixture(scope="module")
def server():
    srv = BundledTriton(MODEL_REPOSITORY)
    srv.start()
    pgid = srv.pid
    yield srv
    srv.stop()
    # Nothing of the server's process group (server + Python-backend stubs) is left.
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)


@pytest.fixture(scope="module")
def reference():
    local = LocalPredictor()
    f, s, h = example_inputs(local.model, batch=3, seed=11)
    h = h.reshape(-1)
    shape = local.predict_shape(f, s, h)
    return f, s, h, shape, mesh_from_shape(shape, h)


def test_unreachable_server_is_a_clear_error():
    port = free_port()
    for proto in ("http", "grpc"):
        with pytest.raises(TritonUnavailableError, match="not reachable"):
            TritonPredictor(f"127.0.0.1:{port}", protocol=proto)


def test_server_environment_passes_the_anny_cache_on(monkeypatch, tmp_path):
    """The Python stubs build Anny: they get this process's cache folder, set or defaulted."""
    from bodyshape import paths
    from bodyshape.triton_bundle import server_environment

    monkeypatch.delenv("ANNY_CACHE_DIR", raising=False)
    env = server_environment()
    assert env["ANNY_CACHE_DIR"] == str(paths.anny_cache_dir())
    assert "ANNY_CACHE_DIR" not in os.environ  # building the environment changes nothing here
    monkeypatch.setenv("ANNY_CACHE_DIR", str(tmp_path))
    assert server_environment()["ANNY_CACHE_DIR"] == str(tmp_path)
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(paths.REPO_DIR)


@pytest.mark.triton
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_client_matches_in_process_pytorch(server, reference, protocol):
    f, s, h, ref_shape, ref_verts = reference
    url = server.http_url if protocol == "http" else server.grpc_url
    with TritonPredictor(url, protocol=protocol) as p:
        shape = p.predict_shape(f, s, h)
        assert shape.shape == ref_shape.shape and shape.dtype == np.float32
        assert np.abs(shape - ref_shape).max() < SHAPE_ATOL
        shape2, verts = p.reconstruct(f, s, h)
        assert verts.shape == ref_verts.shape == (3, N_VERTICES, 3)
        assert np.abs(shape2 - ref_shape).max() < SHAPE_ATOL
        assert np.abs(verts - ref_verts).max() < VERTEX_ATOL
        # a single pair, (H, W) silhouettes
        one = p.predict_shape(f[0], s[0], h[:1])
        assert np.abs(one - ref_shape[:1]).max() < SHAPE_ATOL


def _http_request(client, model, arrays):
    inputs = []
    for name, a in arrays.items():
        t = thttp.InferInput(name, list(a.shape), {np.uint8: "UINT8", np.float32: "FP32"}[a.dtype.type])
        t.set_data_from_numpy(a, binary_data=True)
        inputs.append(t)
    names = ["SHAPE", "VERTICES"] if model == "body_pipeline" else ["SHAPE"]
    return client.infer(
        model, inputs, outputs=[thttp.InferRequestedOutput(n, binary_data=True) for n in names]
    )


def _bad_inputs(f, s, h):
    hh = h[:1].reshape(1, 1).astype(np.float32)
    big = 65
    return {
        "wrong shape": {"FRONT": f[:1, :100], "SIDE": s[:1], "HEIGHT": hh},
        "wrong dtype": {"FRONT": f[:1].astype(np.float32), "SIDE": s[:1], "HEIGHT": hh},
        "NaN height": {"FRONT": f[:1], "SIDE": s[:1], "HEIGHT": np.full((1, 1), np.nan, np.float32)},
        "height in cm": {"FRONT": f[:1], "SIDE": s[:1], "HEIGHT": np.full((1, 1), 170.0, np.float32)},
        "empty silhouette": {"FRONT": np.zeros_like(f[:1]), "SIDE": s[:1], "HEIGHT": hh},
        "batch over max": {
            "FRONT": np.repeat(f[:1], big, 0),
            "SIDE": np.repeat(s[:1], big, 0),
            "HEIGHT": np.full((big, 1), 1.7, np.float32),
        },
    }


@pytest.mark.triton
@pytest.mark.parametrize(
    "case", ["wrong shape", "wrong dtype", "NaN height", "height in cm", "empty silhouette", "batch over max"]
)
@pytest.mark.parametrize("model", ["body_shape", "body_pipeline"])
def test_bad_input_is_refused_and_server_keeps_serving(server, reference, case, model):
    f, s, h, ref_shape, _ = reference
    client = thttp.InferenceServerClient(server.http_url)
    with pytest.raises(thttp.InferenceServerException) as e:
        _http_request(client, model, _bad_inputs(f, s, h)[case])
    print(case, "->", e.value)
    assert e.value.message()
    good = _http_request(client, model, {"FRONT": f[:1], "SIDE": s[:1], "HEIGHT": h[:1].reshape(1, 1)})
    assert np.abs(good.as_numpy("SHAPE") - ref_shape[:1]).max() < SHAPE_ATOL
    assert server.is_running()


@pytest.mark.triton
def test_bad_input_over_grpc_and_through_the_predictor(server, reference):
    f, s, h, ref_shape, _ = reference
    client = tgrpc.InferenceServerClient(server.grpc_url)
    inputs = [
        tgrpc.InferInput("FRONT", list(f[:1].shape), "UINT8"),
        tgrpc.InferInput("SIDE", list(s[:1].shape), "UINT8"),
    ]
    inputs[0].set_data_from_numpy(f[:1])
    inputs[1].set_data_from_numpy(s[:1])
    nan = tgrpc.InferInput("HEIGHT", [1, 1], "FP32")
    nan.set_data_from_numpy(np.full((1, 1), np.nan, np.float32))
    with pytest.raises(tgrpc.InferenceServerException, match="NaN"):
        client.infer("body_shape", inputs + [nan])
    p = TritonPredictor(server.grpc_url, protocol="grpc")
    with pytest.raises(BodyShapeError, match="height"):  # refused before sending
        p.predict_shape(f, s, h * 100)
    with pytest.raises(TritonInferenceError, match="empty"):
        p.predict_shape(np.zeros_like(f), s, h)
    with pytest.raises(TritonInferenceError, match="NaN"):
        p.mesh_from_shape(np.full((1, 20), np.nan, np.float32), [1.7])
    assert np.abs(p.predict_shape(f, s, h) - ref_shape).max() < SHAPE_ATOL


@pytest.mark.triton
def test_predictor_splits_batches_over_the_maximum(server, reference):
    f, s, h, ref_shape, _ = reference
    n = 70
    idx = np.arange(n) % 3
    shape = TritonPredictor(server.http_url).predict_shape(f[idx], s[idx], h[idx])
    assert shape.shape == (n, 20)
    assert np.abs(shape - ref_shape[idx]).max() < SHAPE_ATOL


@pytest.mark.triton
def test_bad_requests_in_a_dynamic_batch_get_their_own_errors(server, reference):
    """Good and bad requests sent together (so that the batcher groups them): each bad one
    gets its own message, each good one its own parameters. The value checks run once per
    batch and per request only when that fails (bodyshape.triton_backend.execute_batched)."""
    f, s, h, ref_shape, _ = reference
    good = {"FRONT": f[:1], "SIDE": s[:1], "HEIGHT": h[:1].reshape(1, 1)}
    bad = _bad_inputs(f, s, h)
    cases = [("good", good), ("NaN height", bad["NaN height"]), ("good", good)]
    cases += [
        ("empty silhouette", bad["empty silhouette"]),
        ("good", good),
        ("height in cm", bad["height in cm"]),
    ]
    expected = {"NaN height": "NaN", "empty silhouette": "empty", "height in cm": "metres"}

    def send(i):
        name, arrays = cases[i]
        client = thttp.InferenceServerClient(server.http_url)  # gevent: one client per thread
        try:
            return name, _http_request(client, "body_shape", arrays)
        except thttp.InferenceServerException as e:
            return name, e

    stats_url = f"http://{server.http_url}/v2/models/body_shape/stats"

    def counts():
        with urllib.request.urlopen(stats_url) as r:
            st = json.load(r)["model_stats"][0]
        return st["inference_count"], st["execution_count"]

    before = counts()
    with ThreadPoolExecutor(len(cases)) as pool:
        for _ in range(5):
            for name, result in pool.map(send, range(len(cases))):
                if name == "good":
                    assert np.abs(result.as_numpy("SHAPE") - ref_shape[:1]).max() < SHAPE_ATOL
                else:
                    assert isinstance(result, thttp.InferenceServerException), name
                    assert expected[name] in result.message(), (name, result.message())
    after = counts()
    print("inferences, executions:", after[0] - before[0], after[1] - before[1])
    assert server.is_running()


@pytest.mark.triton
def test_perf_analyzer_smoke(server, reference, tmp_path):
    """perf_analyzer as `bodyshape bench` runs it: shared memory, server breakdown, CPU per inference."""
    from export.bench import ServerProbe, run_perf_analyzer, write_input_data

    f, s, h, _, _ = reference
    data = write_input_data(tmp_path / "input.json", f[0], s[0], float(h[0]))
    for protocol, url in (("http", server.http_url), ("grpc", server.grpc_url)):
        row = run_perf_analyzer(
            "body_shape",
            url,
            data,
            batch=1,
            concurrency=2,
            protocol=protocol,
            measurement_interval_ms=500,
            max_trials=3,
            stability_percentage=1000,
            shared_memory="system",
            server=ServerProbe(server.http_url, server.pid),
        )
        print(row)
        assert row.infer_per_s > 0 and row.p50_ms > 0 and row.where == f"Triton {protocol}, shm system"
        assert row.breakdown["compute infer"] > 0 and row.cpu_ms > 0 and row.avg_batch >= 1


def _gpu_unavailable_reason() -> str | None:
    """Why the ``gpu`` config cannot be served here, or None."""
    import onnxruntime as ort
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU here (torch.cuda.is_available() is False)"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return f"onnxruntime {ort.__version__} has no CUDAExecutionProvider: pip install onnxruntime-gpu"
    return None


#: ONNX Runtime CUDA (cuDNN, possibly TF32) vs PyTorch on the CPU.
GPU_SHAPE_ATOL = 1e-2
GPU_VERTEX_ATOL = 1e-3  # metres


@pytest.mark.triton
@pytest.mark.skipif(_gpu_unavailable_reason() is not None, reason=f"gpu config: {_gpu_unavailable_reason()}")
def test_gpu_config_serves_on_the_gpu(reference):
    """`bodyshape serve --model-config-name gpu`: body_shape on ONNX Runtime CUDA and body_mesh on
    PyTorch CUDA, KIND_GPU instances, same answers as in-process PyTorch on the CPU."""
    f, s, h, ref_shape, ref_verts = reference
    with BundledTriton(MODEL_REPOSITORY, model_config_name=GPU_CONFIG_NAME) as srv:
        for model in ("body_shape", "body_mesh"):
            cfg = thttp.InferenceServerClient(srv.http_url).get_model_config(model)
            assert [g["kind"] for g in cfg["instance_group"]] == ["KIND_GPU"], cfg["instance_group"]
        with TritonPredictor(srv.grpc_url, protocol="grpc") as p:
            shape, verts = p.reconstruct(f, s, h)
            assert np.abs(shape - ref_shape).max() < GPU_SHAPE_ATOL
            assert np.abs(verts - ref_verts).max() < GPU_VERTEX_ATOL


@pytest.mark.triton
def test_gpu_provider_that_onnxruntime_lacks_is_a_clear_load_error(tmp_path):
    """The CPU half of the GPU path: body_shape asked for ONNX Runtime's CUDA provider where
    onnxruntime has none (the CPU wheel) fails to load, naming the fix; nothing runs on the CPU
    in its place. (KIND_CPU here: a KIND_GPU instance needs a GPU before model.py runs.)"""
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider: test_gpu_config_serves_on_the_gpu covers it")
    info = json.loads((MODEL_REPOSITORY / "body_shape/1/export_info.json").read_text())
    repo = write_repository(tmp_path / "repo", MODEL_REPOSITORY / "body_shape/1/model.onnx", info)
    for model in ("body_mesh", "body_pipeline"):  # body_shape alone: a quicker start
        shutil.rmtree(repo / model)
    gpu = body_shape_config(CANVAS_HW, ServingConfig(), "gpu")
    (repo / "body_shape/config.pbtxt").write_text(gpu.replace("KIND_GPU", "KIND_CPU"))
    with pytest.raises(TritonServerError, match="onnxruntime-gpu") as e:
        BundledTriton(repo, start_timeout_s=120).start()
    print(e.value)


@pytest.mark.triton
def test_server_is_restarted_after_a_crash(server, reference):
    """Last in the module: kill the server like a segfault would, ensure_running() brings it back."""
    f, s, h, ref_shape, _ = reference
    os.kill(server.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while server.is_running() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not server.is_running()
    server.ensure_running()
    assert server.restarts == 1
    shape = TritonPredictor(server.http_url).predict_shape(f, s, h)
    assert np.abs(shape - ref_shape).max() < SHAPE_ATOL
