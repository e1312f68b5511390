"""Triton Python-backend model ``body_mesh``: shape parameters + height -> vertices.

Written by ``bodyshape export`` (source: ``export/triton_models/body_mesh.py``). Calls
``bodyshape.reconstruct.mesh_from_shape`` (the Anny body model), the same function the
in-process path uses, so the server needs the ``bodyshape`` package importable: the
bundled server puts the project's environment first on PATH; in NVIDIA's container,
``pip install`` the project first (see docs/serving.md).

Inputs:  SHAPE fp32 [-1, N_SHAPE], HEIGHT fp32 [-1, 1] metres
Output:  VERTICES fp32 [-1, V, 3] metres (rest A-pose, feet on z = 0, scaled to the height)
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils


def _bad_request(message):
    """TritonError with code INVALID_ARG (HTTP 400) where this Python backend knows codes."""
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    return pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)


class TritonPythonModel:
    def initialize(self, args):
        cfg = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in cfg.get("parameters", {}).items()}
        import torch

        threads = int(params.get("TORCH_THREADS", "0"))
        if threads > 0:
            torch.set_num_threads(threads)
        try:
            from bodyshape.body_model import N_SHAPE, get_body_model
            from bodyshape.errors import BodyShapeError
            from bodyshape.reconstruct import check_height_m, mesh_from_shape
        except ImportError as e:
            raise pb_utils.TritonModelException(
                f"body_mesh needs the bodyshape package in the server's Python ({e}); "
                "start the server from the project's environment (bodyshape serve) or pip install it"
            ) from e
        self.n_shape = N_SHAPE
        self.error_types = (BodyShapeError, ValueError)
        self.check_height_m = check_height_m
        self.mesh_from_shape = mesh_from_shape
        self.body = get_body_model()  # about 5 s from anny's disk cache, 80 s on a cold cache
        self.n_vertices = self.body.n_vertices
        outs = {o["name"]: o for o in cfg["output"]}
        dims = [int(d) for d in outs["VERTICES"]["dims"]]
        if dims != [self.n_vertices, 3]:
            raise pb_utils.TritonModelException(
                f"VERTICES dims {dims} != body model's [{self.n_vertices}, 3]"
            )
        shape0 = np.zeros((1, N_SHAPE), np.float32)
        shape0[:, :6] = 0.5
        self.mesh_from_shape(shape0, np.array([1.7], np.float32), model=self.body)  # warm-up

    def _read(self, request):
        shape = pb_utils.get_input_tensor_by_name(request, "SHAPE").as_numpy()
        height = pb_utils.get_input_tensor_by_name(request, "HEIGHT").as_numpy()
        if shape.ndim != 2 or shape.shape[1] != self.n_shape or shape.dtype != np.float32:
            raise ValueError(
                f"SHAPE must be float32 [batch, {self.n_shape}], got {shape.dtype} {list(shape.shape)}"
            )
        if height.ndim != 2 or height.shape[1] != 1 or height.shape[0] != shape.shape[0]:
            raise ValueError(f"HEIGHT must be float32 [batch, 1] matching SHAPE, got {list(height.shape)}")
        if not np.isfinite(shape).all():
            raise ValueError("SHAPE contains NaN or infinity")
        self.check_height_m(height)  # raises BodyShapeError (a ValueError) with the allowed range
        return shape, height.reshape(-1)

    def execute(self, requests):
        responses = [None] * len(requests)
        good, parts = [], []
        for i, request in enumerate(requests):
            try:
                parts.append(self._read(request))
                good.append(i)
            except self.error_types as e:
                responses[i] = pb_utils.InferenceResponse(error=_bad_request(str(e)))
        if good:
            shape = np.concatenate([p[0] for p in parts])
            height = np.concatenate([p[1] for p in parts])
            try:
                verts = self.mesh_from_shape(shape, height, model=self.body)
            except Exception as e:  # every client of this batch gets the message; the server goes on
                err = pb_utils.TritonError(f"body_mesh failed: {e}")
                for i in good:
                    responses[i] = pb_utils.InferenceResponse(error=err)
                return responses
            start = 0
            for i, p in zip(good, parts, strict=True):
                n = p[0].shape[0]
                out = pb_utils.Tensor("VERTICES", np.ascontiguousarray(verts[start : start + n], np.float32))
                responses[i] = pb_utils.InferenceResponse(output_tensors=[out])
                start += n
        return responses
