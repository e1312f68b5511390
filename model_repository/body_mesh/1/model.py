"""Triton Python-backend model ``body_mesh``: shape parameters + height -> vertices.

Written by ``bodyshape export`` (source: ``export/triton_models/body_mesh.py``). Calls
``bodyshape.reconstruct.mesh_from_shape`` (the Anny body model), the same function the
in-process path uses, and checks heights with ``bodyshape.reconstruct.check_height_m``, so
the server needs the ``bodyshape`` package importable: the bundled server puts the
project's environment first on PATH; in NVIDIA's container, ``pip install`` the project
first (see docs/serving.md). ``config.pbtxt`` runs Anny on the CPU; ``configs/gpu.pbtxt``
(``--model-config-name=gpu``) on the instance's GPU with PyTorch CUDA (parameter DEVICE).

Inputs:  SHAPE fp32 [-1, N_SHAPE], HEIGHT fp32 [-1, 1] metres
Output:  VERTICES fp32 [-1, V, 3] metres (rest A-pose, feet on z = 0, scaled to the height)
"""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        try:
            import torch

            from bodyshape.body_model import N_PHENOTYPES, N_SHAPE, N_VERTICES, get_body_model
            from bodyshape.reconstruct import check_height_m, mesh_from_shape
            from bodyshape.triton_backend import execute_batched, input_arrays, model_config
        except ImportError as e:
            raise pb_utils.TritonModelException(
                f"body_mesh needs the bodyshape package in the server's Python ({e}); "
                "start the server from the project's environment (bodyshape serve) or pip install it"
            ) from e
        self.execute_batched, self.input_arrays = execute_batched, input_arrays
        cfg, params = model_config(args)
        threads = int(params.get("TORCH_THREADS", "0"))
        if threads > 0:
            torch.set_num_threads(threads)
        device = params.get("DEVICE", "cpu")
        if device == "cuda":
            if not torch.cuda.is_available():
                raise pb_utils.TritonModelException(
                    f"the GPU config of body_mesh needs PyTorch with CUDA and a GPU; this torch "
                    f"{torch.__version__} sees none"
                )
            device = f"cuda:{int(args.get('model_instance_device_id') or 0)}"
        elif device != "cpu":
            raise pb_utils.TritonModelException(f"DEVICE must be cpu or cuda, got {device!r}")
        self.n_shape = N_SHAPE
        self.check_height_m = check_height_m
        self.mesh_from_shape = mesh_from_shape
        self.body = get_body_model(device)  # about 5 s from anny's disk cache, 80 s on a cold cache
        outs = {o["name"]: o for o in cfg["output"]}
        dims = [int(d) for d in outs["VERTICES"]["dims"]]
        if dims != [N_VERTICES, 3]:
            raise pb_utils.TritonModelException(f"VERTICES dims {dims} != body model's [{N_VERTICES}, 3]")
        shape0 = np.zeros((1, N_SHAPE), np.float32)
        shape0[:, :N_PHENOTYPES] = 0.5  # the average phenotype, no local changes
        self._run(shape0, np.array([1.7], np.float32))  # warm-up

    def _run(self, shape, height):
        return self.mesh_from_shape(shape, height, model=self.body)

    def _read(self, request):
        """(shape, heights (B,)), or ValueError with a message for the client."""
        shape, height = self.input_arrays(request, ("SHAPE", "HEIGHT"))
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
        return self.execute_batched(requests, self._read, self._run, "VERTICES", "body_mesh")
