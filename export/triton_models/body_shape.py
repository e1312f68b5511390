"""Triton Python-backend model ``body_shape``: uint8 silhouettes + height -> shape parameters.

Written by ``bodyshape export`` (source: ``export/triton_models/body_shape.py``); runs the
ONNX graph next to this file with ONNX Runtime (CPU). On a GPU host the same model is served
by the native ``tensorrt_plan`` backend instead (``configs/tensorrt_plan.pbtxt``).

Inputs:  FRONT uint8 [-1, H, W], SIDE uint8 [-1, H, W] (0/255, body > 0), HEIGHT fp32 [-1, 1] m
Output:  SHAPE fp32 [-1, N_SHAPE]

Triton's core already refuses a wrong dtype, a wrong shape and a batch over max_batch_size.
This model refuses what only it can see (NaN, height out of range, empty silhouette,
mismatched batch sizes) with a per-request TritonError; other requests in the same dynamic
batch are still answered. Only this file's dependencies: numpy and onnxruntime.
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils

INPUTS = ("FRONT", "SIDE", "HEIGHT")


def _bad_request(message):
    """TritonError with code INVALID_ARG (HTTP 400) where this Python backend knows codes."""
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    return pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)


class TritonPythonModel:
    def initialize(self, args):
        cfg = json.loads(args["model_config"])
        self.max_batch = int(cfg["max_batch_size"])
        inputs = {i["name"]: i for i in cfg["input"]}
        if set(inputs) != set(INPUTS) or [o["name"] for o in cfg["output"]] != ["SHAPE"]:
            raise pb_utils.TritonModelException(
                f"body_shape needs inputs {INPUTS} and output SHAPE, config has {sorted(inputs)}"
            )
        self.hw = tuple(int(d) for d in inputs["FRONT"]["dims"])
        if tuple(int(d) for d in inputs["SIDE"]["dims"]) != self.hw:
            raise pb_utils.TritonModelException("FRONT and SIDE must have the same dims")
        params = {k: v["string_value"] for k, v in cfg.get("parameters", {}).items()}
        self.min_h = float(params.get("MIN_HEIGHT_M", "1.0"))
        self.max_h = float(params.get("MAX_HEIGHT_M", "2.3"))
        threads = int(params.get("ORT_INTRA_OP_THREADS", "1"))

        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Spinning intra-op threads burn a core while waiting: bad when the server shares the CPU.
        opts.add_session_config_entry("session.intra_op.allow_spinning", params.get("ORT_ALLOW_SPINNING", "1"))
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.onnx")
        self.session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
        got = {i.name: i.type for i in self.session.get_inputs()}
        want = {"FRONT": "tensor(uint8)", "SIDE": "tensor(uint8)", "HEIGHT": "tensor(float)"}
        if got != want:
            raise pb_utils.TritonModelException(f"{path} has inputs {got}, expected {want}")
        # Warm-up so that the first client request does not pay for memory planning.
        zeros = np.zeros((1,) + self.hw, np.uint8)
        self.session.run(None, {"FRONT": zeros, "SIDE": zeros, "HEIGHT": np.full((1, 1), 1.7, np.float32)})

    def _read(self, request):
        """The request's arrays, or ValueError with a message for the client."""
        arrays = {}
        for name in INPUTS:
            t = pb_utils.get_input_tensor_by_name(request, name)
            if t is None:
                raise ValueError(f"input {name} is missing")
            arrays[name] = t.as_numpy()
        f, s, h = arrays["FRONT"], arrays["SIDE"], arrays["HEIGHT"]
        for name, a in (("FRONT", f), ("SIDE", s)):
            if a.dtype != np.uint8 or a.ndim != 3 or a.shape[1:] != self.hw:
                raise ValueError(
                    f"{name} must be uint8 of shape [batch, {self.hw[0]}, {self.hw[1]}] "
                    f"(normalised silhouette, 0/255), got {a.dtype} {list(a.shape)}"
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
        if not np.isfinite(h).all():
            raise ValueError("HEIGHT contains NaN or infinity")
        if (h < self.min_h).any() or (h > self.max_h).any():
            raise ValueError(
                f"HEIGHT must be in metres, between {self.min_h} and {self.max_h}, got {h.reshape(-1).tolist()}"
            )
        for name, a in (("FRONT", f), ("SIDE", s)):
            empty = np.flatnonzero(a.reshape(n, -1).max(axis=1) == 0)
            if empty.size:
                raise ValueError(f"{name} silhouette is empty (all zero) at batch index {empty.tolist()}")
        return f, s, h

    def execute(self, requests):
        responses = [None] * len(requests)
        good, parts = [], []
        for i, request in enumerate(requests):
            try:
                parts.append(self._read(request))
                good.append(i)
            except ValueError as e:
                responses[i] = pb_utils.InferenceResponse(error=_bad_request(str(e)))
        if good:
            # One ONNX Runtime call for the whole dynamic batch.
            feeds = {name: np.concatenate([p[k] for p in parts]) for k, name in enumerate(INPUTS)}
            try:
                (shape,) = self.session.run(None, feeds)
            except Exception as e:  # report to every client of this batch; the server keeps serving
                err = pb_utils.TritonError(f"body_shape inference failed: {e}")
                for i in good:
                    responses[i] = pb_utils.InferenceResponse(error=err)
                return responses
            start = 0
            for i, p in zip(good, parts, strict=True):
                n = p[0].shape[0]
                out = pb_utils.Tensor("SHAPE", np.ascontiguousarray(shape[start : start + n], np.float32))
                responses[i] = pb_utils.InferenceResponse(output_tensors=[out])
                start += n
        return responses

    def finalize(self):
        self.session = None
