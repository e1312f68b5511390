"""Client of the Triton models (bundled server or any Triton serving ``model_repository/``).

    p = TritonPredictor("127.0.0.1:8000")                  # HTTP, or protocol="grpc" + port 8001
    shape = p.predict_shape(front_u8, side_u8, height_m)   # (B, N_SHAPE) via body_shape
    shape, vertices = p.reconstruct(front_u8, side_u8, height_m)  # via the body_pipeline ensemble

Inputs are normalised silhouettes (B, H, W) uint8 coverage canvases (or (H, W) for one person) and
heights in metres (B,). Tensors travel as binary data (the bundled 2.51 server fails on
JSON-encoded Python-backend outputs). Batches over the server's maximum are split.
Errors: :class:`TritonUnavailableError` when the server cannot be reached or one of the models
is not ready (``not_ready`` then names them, with Triton's state and reason), and
:class:`TritonInferenceError` when it refuses a request (its message is kept).

Fail-over: a request whose connection fails (refused, reset, closed before the answer), or that
a load balancer answers with 502/503 (no replica could take it), is sent again, ``retries``
times at most, after a short pause and on a new connection: inference is idempotent, and
behind a balancer (``bodyshape serve --replicas N``) the next try reaches a live replica.
Timeouts are not retried: a hung or overloaded server would get the work twice.
"""

from __future__ import annotations

import contextlib
import http.client
import time

import numpy as np

from bodyshape.body_model import N_SHAPE
from bodyshape.errors import BodyShapeError

SHAPE_MODEL = "body_shape"
MESH_MODEL = "body_mesh"
PIPELINE_MODEL = "body_pipeline"
MODELS = (SHAPE_MODEL, MESH_MODEL, PIPELINE_MODEL)
#: HTTP statuses of a load balancer that could not reach a replica (504, its timeout, is not
#: retried: the replica may still be working on the request).
GATEWAY_ERRORS = ("502", "503")
#: Connection failures are retried this many times, after RETRY_PAUSE_S, 2x, 4x ... that.
DEFAULT_RETRIES = 2
RETRY_PAUSE_S = 0.25


class TritonUnavailableError(BodyShapeError):
    """The Triton server cannot be reached, or its models are not ready.

    ``not_ready``: {model: "STATE: reason"} when the server answers but those models are not
    ready; empty when the server itself cannot be reached.
    """

    def __init__(self, message: str, not_ready: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.not_ready = dict(not_ready or {})


def describe_not_ready(not_ready: dict[str, str]) -> str:
    """``{"body_mesh": "UNAVAILABLE: unloaded"}`` -> "model body_mesh (UNAVAILABLE: unloaded) is not ready"."""
    parts = [f"{m} ({s})" if s else m for m, s in not_ready.items()]
    if len(parts) == 1:
        return f"model {parts[0]} is not ready"
    return f"models {', '.join(parts)} are not ready"


class TritonInferenceError(BodyShapeError):
    """The server answered a request with an error (bad input, model failure)."""


def _strip_scheme(url: str) -> tuple[str, bool]:
    for scheme in ("http://", "https://", "grpc://", "grpcs://"):
        if url.startswith(scheme):
            return url[len(scheme) :].rstrip("/"), scheme in ("https://", "grpcs://")
    return url.rstrip("/"), False


class TritonPredictor:
    """Shape parameters and vertices from a Triton server (HTTP or gRPC), same API as LocalPredictor."""

    def __init__(
        self,
        url: str,
        protocol: str = "http",
        timeout_s: float = 60.0,
        connect_timeout_s: float = 5.0,
        max_batch_size: int = 64,
        check_ready: bool = True,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        if protocol not in ("http", "grpc"):
            raise BodyShapeError(f"protocol must be 'http' or 'grpc', got {protocol!r}")
        self.url, self._ssl = _strip_scheme(url)
        self.protocol = protocol
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_batch_size = max_batch_size
        self.retries = max(0, int(retries))
        try:
            self._client = self._new_client()
        except Exception as e:  # malformed URL and the like
            raise TritonUnavailableError(f"cannot create a Triton {protocol} client for {url!r}: {e}") from e
        if check_ready:
            self.wait_ready(timeout_s=0)

    def _new_client(self):
        if self.protocol == "http":
            import tritonclient.http as tc

            self._tc = tc
            return tc.InferenceServerClient(
                self.url,
                connection_timeout=self.connect_timeout_s,
                network_timeout=self.timeout_s,
                ssl=self._ssl,
            )
        import tritonclient.grpc as tc

        self._tc = tc
        return tc.InferenceServerClient(self.url, ssl=self._ssl)

    def _reconnect(self) -> None:
        """A new client: the old one's pooled connections may lead to a replica that died."""
        old, self._client = self._client, self._new_client()
        with contextlib.suppress(Exception):  # closing a client of a dead server
            old.close()

    def __repr__(self) -> str:
        return f"TritonPredictor({self.url!r}, protocol={self.protocol!r})"

    # ------------------------------------------------------------------ health
    def _health(self, method: str, *args):
        """A health call, bounded by ``timeout_s`` (HTTP: the client's network timeout)."""
        kwargs = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
        return getattr(self._client, method)(*args, **kwargs)

    def is_ready(self, models: tuple[str, ...] = MODELS) -> bool:
        try:
            return bool(self._health("is_server_ready")) and all(
                self._health("is_model_ready", m) for m in models
            )
        except Exception:
            return False

    def not_ready(self, models: tuple[str, ...] = MODELS) -> dict[str, str] | None:
        """None when the server cannot be reached; else {model: "STATE: reason"} for each of
        ``models`` that is not ready (empty: all ready). State and reason come from the
        server's repository index (e.g. "UNAVAILABLE: unloaded")."""
        try:
            if not self._health("is_server_live"):
                return None
            missing = [m for m in models if not self._health("is_model_ready", m)]
        except Exception:
            return None
        if not missing:
            return {}
        states = {}
        try:
            if self.protocol == "grpc":
                index = self._client.get_model_repository_index(as_json=True, client_timeout=self.timeout_s)
            else:
                index = self._client.get_model_repository_index()
            entries = index.get("models", []) if isinstance(index, dict) else index
            states = {e.get("name"): e for e in entries}
        except Exception:  # the index is only used to say why
            pass
        out = {}
        for m in missing:
            e = states.get(m)
            if e is None:
                out[m] = "not in the repository" if states else ""
            else:
                state = e.get("state") or "UNKNOWN"
                out[m] = f"{state}: {e['reason']}" if e.get("reason") else state
        return out

    def _unavailable(self, not_ready: dict[str, str] | None, cause: object = None) -> TritonUnavailableError:
        """The error for a server that cannot be reached (``not_ready`` None or empty) or whose
        models are not ready (``not_ready`` names them)."""
        if not_ready:
            return TritonUnavailableError(
                f"Triton server at {self.url} ({self.protocol}) is up but its {describe_not_ready(not_ready)}",
                not_ready,
            )
        return TritonUnavailableError(
            f"Triton server at {self.url} ({self.protocol}) is not reachable"
            + (f" ({cause})" if cause else "")
            + "; start one with `bodyshape serve` or pass the URL of a running server"
        )

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Return once the server and the three models are ready, else TritonUnavailableError."""
        import time

        deadline = time.monotonic() + timeout_s
        while True:
            not_ready = self.not_ready()
            if not_ready == {}:
                return
            if time.monotonic() >= deadline:
                raise self._unavailable(not_ready)
            time.sleep(0.25)

    # ------------------------------------------------------------------ inference
    def _infer(
        self, model: str, inputs: dict[str, np.ndarray], outputs: tuple[str, ...]
    ) -> dict[str, np.ndarray]:
        """One inference; a failed connection is retried up to ``retries`` times (module doc)."""
        for attempt in range(self.retries + 1):
            try:
                return self._infer_once(model, inputs, outputs)
            except TritonUnavailableError as e:
                if attempt == self.retries or not _retryable(e.__cause__):
                    raise
            time.sleep(RETRY_PAUSE_S * 2**attempt)
            self._reconnect()
        raise AssertionError("unreachable")

    def _infer_once(
        self, model: str, inputs: dict[str, np.ndarray], outputs: tuple[str, ...]
    ) -> dict[str, np.ndarray]:
        tc = self._tc
        dtypes = {np.dtype(np.uint8): "UINT8", np.dtype(np.float32): "FP32"}
        tensors = []
        for name, arr in inputs.items():
            t = tc.InferInput(name, list(arr.shape), dtypes[arr.dtype])
            if self.protocol == "http":
                t.set_data_from_numpy(arr, binary_data=True)
            else:
                t.set_data_from_numpy(arr)
            tensors.append(t)
        if self.protocol == "http":
            req = [tc.InferRequestedOutput(o, binary_data=True) for o in outputs]
            kwargs = {"timeout": int(self.timeout_s * 1e6)}  # server-side timeout (us)
        else:
            req = [tc.InferRequestedOutput(o) for o in outputs]
            kwargs = {"client_timeout": self.timeout_s}
        try:
            result = self._client.infer(model, tensors, outputs=req, **kwargs)
        except tc.InferenceServerException as e:
            if _is_connection_error(e) or _status(e) in GATEWAY_ERRORS:
                raise TritonUnavailableError(f"Triton server at {self.url} is not reachable: {e}") from e
            # "unknown model ... has no available versions" and the like: say which model is down.
            not_ready = self.not_ready()
            if not_ready is None or not_ready:
                raise self._unavailable(not_ready, e.message()) from e
            raise TritonInferenceError(f"Triton model {model} refused the request: {e.message()}") from e
        except (ConnectionError, OSError, http.client.HTTPException) as e:
            # HTTP (geventhttpclient): connection refused or reset, closed mid-response, timeout.
            raise TritonUnavailableError(
                f"Triton server at {self.url} is not reachable: {type(e).__name__}: {e}"
            ) from e
        return {o: result.as_numpy(o) for o in outputs}

    def _batches(self, front, side, height_m):
        front, side, height = _prepare(front, side, height_m)
        for i in range(0, len(front), self.max_batch_size):
            sl = slice(i, i + self.max_batch_size)
            yield {"FRONT": front[sl], "SIDE": side[sl], "HEIGHT": height[sl]}

    def predict_shape(self, front: np.ndarray, side: np.ndarray, height_m) -> np.ndarray:
        """Silhouettes (B, H, W) uint8 + heights (B,) m -> shape parameters (B, N_SHAPE) float32."""
        outs = [
            self._infer(SHAPE_MODEL, b, ("SHAPE",))["SHAPE"] for b in self._batches(front, side, height_m)
        ]
        return np.concatenate(outs).astype(np.float32, copy=False)

    def reconstruct(self, front: np.ndarray, side: np.ndarray, height_m) -> tuple[np.ndarray, np.ndarray]:
        """-> (shape (B, N_SHAPE), vertices (B, V, 3) metres), through the body_pipeline ensemble."""
        shapes, verts = [], []
        for b in self._batches(front, side, height_m):
            r = self._infer(PIPELINE_MODEL, b, ("SHAPE", "VERTICES"))
            shapes.append(r["SHAPE"])
            verts.append(r["VERTICES"])
        return np.concatenate(shapes), np.concatenate(verts)

    def mesh_from_shape(self, shape: np.ndarray, height_m) -> np.ndarray:
        """Shape parameters (B, N_SHAPE) + heights (B,) -> vertices (B, V, 3) via body_mesh."""
        shape = np.ascontiguousarray(shape, np.float32)
        if shape.ndim == 1:
            shape = shape[None]
        if shape.ndim != 2 or shape.shape[1] != N_SHAPE:
            raise BodyShapeError(f"shape parameters must be (batch, {N_SHAPE}), got {shape.shape}")
        height = np.asarray(height_m, np.float32).reshape(-1, 1)
        out = []
        for i in range(0, len(shape), self.max_batch_size):
            sl = slice(i, i + self.max_batch_size)
            out.append(
                self._infer(MESH_MODEL, {"SHAPE": shape[sl], "HEIGHT": height[sl]}, ("VERTICES",))["VERTICES"]
            )
        return np.concatenate(out)

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:  # closing a client whose server is gone is not an error worth raising
            pass

    def __enter__(self) -> TritonPredictor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _prepare(front, side, height_m) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check and shape the inputs: (B, H, W) uint8 coverage canvases, (B, 1) float32 heights."""
    from bodyshape.reconstruct import check_height_m
    from bodyshape.silhouette import as_canvases

    front, side = np.asarray(front), np.asarray(side)
    if front.ndim == 2:
        front, side = front[None], side[None]
    if front.ndim != 3 or front.shape != side.shape:
        raise BodyShapeError(
            f"front and side must both be (B, H, W) silhouettes, got {front.shape} and {side.shape}"
        )
    front, side = as_canvases(front, "the front silhouettes"), as_canvases(side, "the side silhouettes")
    height = check_height_m(height_m).reshape(-1, 1)
    if len(height) != len(front):
        raise BodyShapeError(f"got {len(front)} silhouette pairs but {len(height)} heights")
    return np.ascontiguousarray(front), np.ascontiguousarray(side), np.ascontiguousarray(height)


def _retryable(e: BaseException | None) -> bool:
    """A failure worth another try: the connection failed (refused, reset, closed early) or a
    load balancer had no replica for the request (HTTP 502/503, gRPC UNAVAILABLE). Not a
    timeout, not a model's own error."""
    if e is None or isinstance(e, TimeoutError):
        return False
    if isinstance(e, ConnectionError | http.client.HTTPException):
        return True
    status = _status(e)
    if status in GATEWAY_ERRORS or status.endswith("UNAVAILABLE"):
        return True
    msg = str(e).lower()
    if "timed out" in msg or "timeout" in msg or "deadline" in msg:
        return False
    return isinstance(e, OSError) or any(
        k in msg
        for k in ("connection refused", "connection reset", "failed to connect", "broken pipe", "eof")
    )


def _status(e: BaseException) -> str:
    """tritonclient's status of an InferenceServerException ("503", "StatusCode.UNAVAILABLE"), or ""."""
    status = getattr(e, "status", None)
    return str(status() or "") if callable(status) else ""


def _is_connection_error(e: Exception) -> bool:
    msg = str(e).lower()
    return any(
        k in msg
        for k in (
            "unavailable",
            "failed to connect",
            "connection refused",
            "deadline",
            "connect",
            "unreachable",
        )
    )
