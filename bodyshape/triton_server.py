"""``bodyshape serve``: the bundled Triton server in the foreground until Ctrl-C.

Also the public entry point of the bundled server, so that ``from bodyshape.triton_server
import BundledTriton, TritonServerError, free_port`` keeps working. The work is split by job:

- :mod:`bodyshape.triton_bundle`: where the nvidia-pytriton wheel's ``tritonserver`` is, the
  backends folder, environment and command line it needs;
- :mod:`bodyshape.triton_supervisor`: :class:`BundledTriton`, which starts, watches,
  restarts and stops it;
- :mod:`bodyshape.triton_log`: which model failed to load, from the server's log;
- :mod:`bodyshape.process_group`: the server and its Python stubs as one process group;
- :mod:`bodyshape.replicas`: ``--replicas N``, N such servers behind HAProxy (docs/scaling.md).

See docs/serving.md ("The bundled server") for what each of them takes care of and why.
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from bodyshape.paths import MODEL_REPOSITORY
from bodyshape.triton_bundle import TritonServerError, find_tritonserver, prepare_backends
from bodyshape.triton_supervisor import (
    DEFAULT_START_TIMEOUT_S,
    LOAD_FAILURE_GRACE_S,
    BundledTriton,
    free_port,
)

__all__ = [
    "DEFAULT_START_TIMEOUT_S",
    "LOAD_FAILURE_GRACE_S",
    "BundledTriton",
    "TritonServerError",
    "add_arguments",
    "find_tritonserver",
    "free_port",
    "prepare_backends",
    "run",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-repository", type=Path, default=MODEL_REPOSITORY)
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_START_TIMEOUT_S, help="seconds to wait for readiness"
    )
    parser.add_argument(
        "--log", type=Path, default=None,
        help="server log file (default: a temporary file); with --replicas: a folder for all logs",
    )  # fmt: skip
    parser.add_argument(
        "--model-config-name",
        default=None,
        help="config variant: gpu (ONNX Runtime CUDA + Anny on PyTorch CUDA, needs onnxruntime-gpu), "
        "or tensorrt_plan (NVIDIA's container with a built model.plan)",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=None,
        help="start N supervised servers on free loopback ports behind HAProxy, which listens on "
        "--http-port/--grpc-port (needs `apt-get install haproxy`; docs/scaling.md)",
    )
    parser.add_argument(
        "--bind",
        default="127.0.0.1",
        help="with --replicas: the balancer's address (default 127.0.0.1; the replicas always stay "
        "on 127.0.0.1). Anything else exposes the models to whoever reaches this machine",
    )


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
    print("stopping ...", flush=True)


def run_replicas(args: argparse.Namespace) -> int:
    """``--replicas N``: N bundled servers behind HAProxy, in the foreground until Ctrl-C."""
    from bodyshape.replicas import ReplicaSet

    replicas = ReplicaSet(
        args.replicas,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        bind=args.bind,
        model_repository=args.model_repository,
        model_config_name=args.model_config_name,
        start_timeout_s=args.timeout,
        log_dir=args.log,
    )
    print(f"starting {args.replicas} tritonserver replicas on 127.0.0.1 behind HAProxy ...", flush=True)
    with replicas.start(say=lambda m: print("  " + m, flush=True)):
        print(
            f"ready: HTTP {replicas.http_url}  gRPC {replicas.grpc_url}  (HAProxy pid {replicas.pid}; "
            f"logs in {replicas.log_dir})\n"
            f"point clients there: bodyshape demo --triton-url {replicas.http_url}. Ctrl-C to stop.",
            flush=True,
        )
        _wait_for_signal()
    print("stopped.")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.replicas is not None:
        return run_replicas(args)
    if args.bind != "127.0.0.1":
        raise TritonServerError(
            "--bind applies to the balancer of --replicas; the bundled server stays on 127.0.0.1"
        )
    server = BundledTriton(
        args.model_repository,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        start_timeout_s=args.timeout,
        supervise=True,
        log_path=args.log,
        model_config_name=args.model_config_name,
    )
    print(f"starting tritonserver on 127.0.0.1 (repository {server.model_repository}) ...", flush=True)
    with server:
        print(
            f"ready: HTTP {server.http_url}  gRPC {server.grpc_url}  (pid {server.pid}, log {server.log_path})\n"
            "models: body_shape, body_mesh, body_pipeline. Ctrl-C to stop.",
            flush=True,
        )
        _wait_for_signal()
    print("stopped.")
    return 0
