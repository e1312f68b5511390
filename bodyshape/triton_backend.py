"""What the Triton Python-backend models share: config parameters, request errors, the batched loop.

Imported by ``model_repository/body_shape/1/model.py`` and ``body_mesh/1/model.py`` (sources in
``export/triton_models/``) inside Triton's Python stub, the only place where
``triton_python_backend_utils`` exists: this module cannot be imported anywhere else.
It needs numpy only, so that ``body_shape`` (ONNX Runtime) does not load torch.

The loop's contract (``tests/test_triton.py`` checks it on the real server): a request that
is wrong gets its own ``INVALID_ARG`` error (HTTP 400) and the other requests of the same
dynamic batch are still answered; the valid ones are computed in one call; a failure of
that call goes to each of its requests, and the server keeps serving.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import numpy as np
import triton_python_backend_utils as pb_utils


def model_config(args: dict) -> tuple[dict, dict[str, str]]:
    """(the model's config as a dict, its ``parameters`` as {key: string value})."""
    cfg = json.loads(args["model_config"])
    params = {k: v["string_value"] for k, v in cfg.get("parameters", {}).items()}
    return cfg, params


def required_parameter(params: dict[str, str], key: str) -> str:
    """A parameter that ``bodyshape export`` always writes; a config without it is refused."""
    if key not in params:
        raise pb_utils.TritonModelException(
            f"config.pbtxt has no parameter {key}: regenerate the repository with `bodyshape export`"
        )
    return params[key]


def bad_request(message: str) -> pb_utils.TritonError:
    """TritonError with code INVALID_ARG (HTTP 400) where this Python backend knows codes."""
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    return pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)


def input_arrays(request, names: Sequence[str]) -> list[np.ndarray]:
    """The request's input tensors as numpy arrays, in ``names`` order; ValueError if one is missing."""
    arrays = []
    for name in names:
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        if tensor is None:
            raise ValueError(f"input {name} is missing")
        arrays.append(tensor.as_numpy())
    return arrays


def _concatenated(parts: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
    """Each input concatenated over the requests; one request's arrays are used as they are."""
    if len(parts) == 1:
        return list(parts[0])
    return [np.concatenate(column) for column in zip(*parts, strict=True)]


def execute_batched(
    requests: Sequence,
    read: Callable[[object], Sequence[np.ndarray]],
    run: Callable[..., np.ndarray],
    output: str,
    what: str,
    check: Callable[..., None] | None = None,
) -> list:
    """Answer a dynamic batch of ``requests`` with one call of ``run``.

    ``read(request)`` returns the request's arrays (batch axis first) or raises ValueError,
    whose message goes to that client alone. ``check(*arrays)``, if given, checks values
    (NaN, ranges, ...) and raises ValueError: it runs once over the whole batch, and only if
    that fails, once per request to tell each bad request its own error (the hot path pays
    one vectorised check per batch, not one per request). ``run(*arrays)`` gets each array
    concatenated over the valid requests and returns one array, which is split back into
    one float32 ``output`` tensor per request. ``what`` names the model in the error of a
    failed run.
    """
    responses: list = [None] * len(requests)
    good, parts = [], []
    for i, request in enumerate(requests):
        try:
            parts.append(read(request))
            good.append(i)
        except ValueError as e:  # BodyShapeError is a ValueError
            responses[i] = pb_utils.InferenceResponse(error=bad_request(str(e)))
    if not good:
        return responses
    arrays = _concatenated(parts)
    if check is not None:
        try:
            check(*arrays)
        except ValueError:
            kept = []
            for i, part in zip(good, parts, strict=True):
                try:
                    check(*part)
                    kept.append((i, part))
                except ValueError as e:
                    responses[i] = pb_utils.InferenceResponse(error=bad_request(str(e)))
            if not kept:
                return responses
            good, parts = [i for i, _ in kept], [p for _, p in kept]
            arrays = _concatenated(parts)
    try:
        result = run(*arrays)
    except Exception as e:  # every client of this batch gets the message; the server goes on
        error = pb_utils.TritonError(f"{what} failed: {e}")
        for i in good:
            responses[i] = pb_utils.InferenceResponse(error=error)
        return responses
    result = np.ascontiguousarray(result, np.float32)
    start = 0
    for i, part in zip(good, parts, strict=True):
        n = part[0].shape[0]
        tensor = pb_utils.Tensor(output, result[start : start + n])
        responses[i] = pb_utils.InferenceResponse(output_tensors=[tensor])
        start += n
    return responses
