"""Triton Python-backend model ``body_shape``: uint8 silhouettes + height -> shape parameters.

Written by ``bodyshape export`` (source: ``export/triton_models/body_shape.py``); runs the
ONNX graph next to this file with ONNX Runtime: on the CPU (``config.pbtxt``) or on a GPU
with the CUDA execution provider (``configs/gpu.pbtxt``, ``--model-config-name=gpu``; needs
``onnxruntime-gpu``). In NVIDIA's container the native ``tensorrt_plan`` backend can serve
the same model instead (``configs/tensorrt_plan.pbtxt``).

Inputs:  FRONT uint8 [-1, H, W], SIDE uint8 [-1, H, W] (coverage canvases, 0..255), HEIGHT fp32 [-1, 1] m
Output:  SHAPE fp32 [-1, N_SHAPE]

Triton's core already refuses a wrong dtype, a wrong shape and a batch over max_batch_size.
This model refuses what only it can see (NaN, height out of range, empty silhouette,
mismatched batch sizes) with a per-request TritonError; other requests in the same dynamic
batch are still answered (``bodyshape.triton_backend``). The value checks run once per
dynamic batch, not once per request (the hot path). The height range comes from the
config's MIN_HEIGHT_M / MAX_HEIGHT_M, which the export writes from
``bodyshape.reconstruct.MIN_HEIGHT_CM`` / ``MAX_HEIGHT_CM``. Dependencies: numpy,
onnxruntime and the ``bodyshape`` package (no torch).
"""

import contextlib
import os

import numpy as np
import triton_python_backend_utils as pb_utils

from bodyshape.silhouette import BODY_THRESHOLD
from bodyshape.triton_backend import execute_batched, input_arrays, model_config, required_parameter

INPUTS = ("FRONT", "SIDE", "HEIGHT")
CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


class TritonPythonModel:
    def initialize(self, args):
        cfg, params = model_config(args)
        self.max_batch = int(cfg["max_batch_size"])
        inputs = {i["name"]: i for i in cfg["input"]}
        if set(inputs) != set(INPUTS) or [o["name"] for o in cfg["output"]] != ["SHAPE"]:
            raise pb_utils.TritonModelException(
                f"body_shape needs inputs {INPUTS} and output SHAPE, config has {sorted(inputs)}"
            )
        self.hw = tuple(int(d) for d in inputs["FRONT"]["dims"])
        if tuple(int(d) for d in inputs["SIDE"]["dims"]) != self.hw:
            raise pb_utils.TritonModelException("FRONT and SIDE must have the same dims")
        self.min_h = float(required_parameter(params, "MIN_HEIGHT_M"))
        self.max_h = float(required_parameter(params, "MAX_HEIGHT_M"))
        self.session = self._session(params, args)
        # Warm-up so that the first client request does not pay for memory planning.
        zeros = np.zeros((1,) + self.hw, np.uint8)
        self._run(zeros, zeros, np.full((1, 1), (self.min_h + self.max_h) / 2, np.float32))

    def _providers(self, provider, args):
        """ONNX Runtime's provider list for ``EXECUTION_PROVIDER``; a GPU that ORT cannot use is refused."""
        import onnxruntime as ort

        if provider == CPU:
            return [CPU]
        if provider != CUDA:
            raise pb_utils.TritonModelException(
                f"EXECUTION_PROVIDER must be {CPU} or {CUDA}, got {provider!r}"
            )
        if hasattr(ort, "preload_dlls"):  # CUDA/cuDNN from the nvidia-* wheels, if installed
            with contextlib.suppress(Exception):
                ort.preload_dlls()
        if CUDA not in ort.get_available_providers():
            raise pb_utils.TritonModelException(
                f"the GPU config needs ONNX Runtime's {CUDA}, this onnxruntime {ort.__version__} has "
                f"{ort.get_available_providers()}: pip install onnxruntime-gpu (in place of onnxruntime)"
            )
        device = int(args.get("model_instance_device_id") or 0)
        return [(CUDA, {"device_id": device}), CPU]

    def _session(self, params, args):
        import onnxruntime as ort

        provider = params.get("EXECUTION_PROVIDER", CPU)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = int(params.get("ORT_INTRA_OP_THREADS", "1"))
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Spinning intra-op threads burn a core while waiting: bad when the server shares the CPU.
        opts.add_session_config_entry(
            "session.intra_op.allow_spinning", params.get("ORT_ALLOW_SPINNING", "1")
        )
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.onnx")
        session = ort.InferenceSession(path, sess_options=opts, providers=self._providers(provider, args))
        if session.get_providers()[0] != provider:  # ORT falls back to the CPU with a mere warning
            raise pb_utils.TritonModelException(
                f"ONNX Runtime could not start {provider} (CUDA or cuDNN libraries missing?): "
                f"the session runs on {session.get_providers()}"
            )
        got = {i.name: i.type for i in session.get_inputs()}
        want = {"FRONT": "tensor(uint8)", "SIDE": "tensor(uint8)", "HEIGHT": "tensor(float)"}
        if got != want:
            raise pb_utils.TritonModelException(f"{path} has inputs {got}, expected {want}")
        return session

    def _run(self, front, side, height):
        return self.session.run(None, {"FRONT": front, "SIDE": side, "HEIGHT": height})[0]

    def _read(self, request):
        """The request's arrays, or ValueError: what depends on the request's own shapes."""
        f, s, h = input_arrays(request, INPUTS)
        for name, a in (("FRONT", f), ("SIDE", s)):
            if a.dtype != np.uint8 or a.ndim != 3 or a.shape[1:] != self.hw:
                raise ValueError(
                    f"{name} must be uint8 of shape [batch, {self.hw[0]}, {self.hw[1]}] "
                    f"(normalised silhouette, a coverage canvas), got {a.dtype} {list(a.shape)}"
                )
        if h.dtype != np.float32 or h.ndim != 2 or h.shape[1] != 1:
            raise ValueError(
                f"HEIGHT must be float32 of shape [batch, 1] (metres), got {h.dtype} {list(h.shape)}"
            )
        n = f.shape[0]
        if s.shape[0] != n or h.shape[0] != n:
            raise ValueError(f"batch sizes differ: FRONT {n}, SIDE {s.shape[0]}, HEIGHT {h.shape[0]}")
        if not 1 <= n <= self.max_batch:
            raise ValueError(f"batch size must be 1..{self.max_batch}, got {n}")
        return f, s, h

    def _check(self, f, s, h):
        """Value checks, vectorised: run once per dynamic batch (per request only if one fails)."""
        if not np.isfinite(h).all():
            raise ValueError("HEIGHT contains NaN or infinity")
        if (h < self.min_h).any() or (h > self.max_h).any():
            raise ValueError(
                f"HEIGHT must be in metres, between {self.min_h} and {self.max_h}, got {h.reshape(-1).tolist()}"
            )
        n = f.shape[0]
        for name, a in (("FRONT", f), ("SIDE", s)):
            empty = np.flatnonzero(a.reshape(n, -1).max(axis=1) < BODY_THRESHOLD)
            if empty.size:
                raise ValueError(f"{name} silhouette is empty (no pixel half covered) at batch index {empty.tolist()}")

    def execute(self, requests):
        # One ONNX Runtime call for the whole dynamic batch.
        return execute_batched(requests, self._read, self._run, "SHAPE", "body_shape inference", self._check)

    def finalize(self):
        self.session = None
