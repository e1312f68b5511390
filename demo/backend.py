"""Where the page gets its bodies from: silhouettes + height -> shape parameters + vertices.

The page talks to a :class:`Backend` only, so it does not care whether the network runs in
Triton (the product path: :class:`TritonBackend`, the ``body_pipeline`` ensemble) or in this
process (:class:`LocalBackend`, PyTorch + Anny; a reference for tests and development).

    backend = TritonBackend("127.0.0.1:8000")
    shape, vertices = backend.reconstruct(front_u8, side_u8, height_m)  # (B, 20), (B, V, 3) m
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Protocol

import numpy as np

from bodyshape.errors import BodyShapeError


class Backend(Protocol):
    name: str

    def reconstruct(
        self, front: np.ndarray, side: np.ndarray, height_m: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Silhouettes (B, 128, 96) uint8 coverage canvases, heights (B,) m -> (shape (B, N), vertices (B, V, 3) m)."""
        ...

    def status(self) -> str:
        """One line for the page: where the model runs and whether it is reachable."""
        ...


class BackendUnavailableError(BodyShapeError):
    """The model server cannot be reached; the message is for the page."""


class TritonBackend:
    """The Triton ``body_pipeline`` ensemble at ``url`` (HTTP, or gRPC with protocol="grpc").

    One client per thread: tritonclient's HTTP client runs on gevent and must not be used from
    a thread other than the one that created it (Gradio calls handlers from a thread pool).
    A client is created on first use and re-created after a connection failure, so the page
    keeps working when the server comes back (or is restarted by its supervisor).
    ``server``: the bundled server behind ``url`` when :func:`open_backend` started it (its
    process id and ports, for the load test and tests), else None.
    """

    def __init__(self, url: str, protocol: str = "http", timeout_s: float = 30.0, server=None) -> None:
        self.url, self.protocol, self.timeout_s, self.server = url, protocol, timeout_s, server
        self.name = f"Triton {protocol} {url}"
        self._local = threading.local()

    def _client(self):
        from bodyshape.triton_client import TritonPredictor, TritonUnavailableError

        predictor = getattr(self._local, "predictor", None)
        if predictor is None:
            try:
                predictor = TritonPredictor(self.url, protocol=self.protocol, timeout_s=self.timeout_s)
            except TritonUnavailableError as e:
                raise BackendUnavailableError(self._unavailable_message(e)) from e
            self._local.predictor = predictor
        return predictor

    def _drop_client(self) -> None:
        """Forget this thread's client (its connections may point at a dead server process)."""
        predictor = getattr(self._local, "predictor", None)
        self._local.predictor = None
        if predictor is not None:
            predictor.close()

    def _unavailable_message(self, error=None) -> str:
        from bodyshape.triton_client import describe_not_ready

        not_ready = getattr(error, "not_ready", None)
        if not_ready:
            return (
                f"the body-shape model server (Triton at {self.url}) is running but its "
                f"{describe_not_ready(not_ready)}; the photos were checked but no body "
                "could be computed. Try again in a moment"
            )
        return (
            f"the body-shape model server (Triton at {self.url}) is not reachable right now; "
            "the photos were checked but no body could be computed. Try again in a moment"
        )

    def reconstruct(self, front, side, height_m):
        from bodyshape.triton_client import TritonUnavailableError

        predictor = self._client()
        try:
            return predictor.reconstruct(front, side, height_m)
        except TritonUnavailableError as e:
            self._drop_client()  # reconnect next time
            raise BackendUnavailableError(self._unavailable_message(e)) from e

    def status(self) -> str:
        from bodyshape.triton_client import describe_not_ready

        try:
            not_ready = self._client().not_ready()
        except BackendUnavailableError as e:
            cause = e.__cause__
            not_ready = getattr(cause, "not_ready", None) or None
        if not_ready is None:
            return f"{self.name}: NOT reachable"
        if not_ready:
            return f"{self.name}: NOT ready ({describe_not_ready(not_ready)})"
        return f"{self.name}: ready"


class LocalBackend:
    """In-process PyTorch network + Anny (no server). For tests and development only."""

    name = "in-process PyTorch"

    def __init__(self, weights: str | None = None) -> None:
        from bodyshape.body_model import get_body_model
        from bodyshape.reconstruct import LocalPredictor

        self.predictor = LocalPredictor(weights)
        self.model = get_body_model()

    def reconstruct(self, front, side, height_m):
        from bodyshape.reconstruct import mesh_from_shape

        shape = self.predictor.predict_shape(front, side, height_m)
        return shape, mesh_from_shape(shape, height_m, self.model)

    def status(self) -> str:
        return f"{self.name}: ready"


@contextlib.contextmanager
def open_backend(
    triton_url: str | None,
    protocol: str = "http",
    local: bool = False,
    supervise: bool = False,
    say: Callable[[str], None] = print,
) -> Iterator[Backend]:
    """The backend the command line asked for; starts (and finally stops) the bundled Triton.

    ``local``: in-process PyTorch; ``triton_url``: that server; neither: the bundled Triton on
    loopback (restarted if it dies when ``supervise``). ``say`` reports the bundled start.
    """
    if local:
        yield LocalBackend()
        return
    if triton_url:
        yield TritonBackend(triton_url, protocol)
        return
    from bodyshape.triton_server import BundledTriton

    say("starting the bundled Triton server on 127.0.0.1 ...")
    server = BundledTriton(supervise=supervise).start()
    try:
        url = server.http_url if protocol == "http" else server.grpc_url
        say(f"Triton ready at {url}")
        yield TritonBackend(url, protocol, server=server)
    finally:
        server.stop()
