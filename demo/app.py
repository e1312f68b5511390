"""``bodyshape demo``: the Gradio page. Photos -> rembg masks -> Triton -> Plotly mesh + measurements.

    bodyshape demo                                   # starts the bundled Triton on loopback
    bodyshape demo --triton-url 10.0.0.5:8000        # or env BODYSHAPE_TRITON_URL
    bodyshape demo --host 0.0.0.0 --auth user:pass   # expose on the network (warns)

This module is the command line only. The parts, one job each:
:mod:`demo.page` (layout, the ``/reconstruct`` API, launching; ``build_demo(backend)``),
:mod:`demo.handler` (one request: :class:`DemoHandler`, its typed results),
:mod:`demo.files` (uploads deleted after their request, downloads), :mod:`demo.mask_cache`
(masks shared across sessions), :mod:`demo.security` (bind address, login, private upload
folder), :mod:`demo.backend` (where the network runs), :mod:`demo.pipeline` (the request path
without a page). The names below are re-exported for callers of the former single module.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from bodyshape.errors import BodyShapeError
from bodyshape.photo import MAX_BYTES
from demo.backend import open_backend
from demo.handler import DemoHandler, Failure, Reconstruction
from demo.page import DEFAULT_CONCURRENCY, DEFAULT_QUEUE_SIZE, STATE_SESSIONS, build_demo, launch
from demo.security import is_loopback, parse_auth, private_upload_dir, warn_if_exposed

__all__ = [
    "DEFAULT_CONCURRENCY", "DEFAULT_HOST", "DEFAULT_PORT", "DEFAULT_QUEUE_SIZE", "STATE_SESSIONS",
    "DemoHandler", "Failure", "Reconstruction", "add_arguments", "build_demo", "is_loopback", "launch",
    "private_upload_dir", "run", "warn_if_exposed",
]  # fmt: skip

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--triton-url", default=os.environ.get("BODYSHAPE_TRITON_URL"),
                        help="use this Triton server (host:port) instead of starting the bundled one "
                             "(default: env BODYSHAPE_TRITON_URL)")  # fmt: skip
    parser.add_argument("--protocol", choices=["http", "grpc"], default="http", help="Triton protocol")
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help="address to bind (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port of the page (default 7860)")
    parser.add_argument("--auth", default=os.environ.get("BODYSHAPE_DEMO_AUTH"),
                        help="USER:PASSWORD for basic login (default: env BODYSHAPE_DEMO_AUTH)")  # fmt: skip
    parser.add_argument("--max-upload-mb", type=float, default=MAX_BYTES / 2**20,
                        help="largest accepted upload, MB (default %(default).0f)")  # fmt: skip
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY,
                        help="reconstructions run at the same time (default %(default)d)")  # fmt: skip
    parser.add_argument("--queue-size", type=int, default=DEFAULT_QUEUE_SIZE,
                        help="requests that may wait beyond those; more get 'busy, try again' "
                             "(default %(default)d)")  # fmt: skip
    parser.add_argument("--local", action="store_true",
                        help="development only: run the network in this process instead of Triton")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    auth = parse_auth(args.auth)
    warn_if_exposed(args.host, auth)
    if args.concurrency < 1 or args.queue_size < 1:
        raise BodyShapeError("--concurrency and --queue-size must be at least 1")
    from bodyshape.assets import u2netp_path

    u2netp_path()  # fail now, with the setup command, rather than in the first request
    private_upload_dir()

    def _stop(signum, frame):  # SIGTERM (service managers, kill): stop like Ctrl-C, Triton included
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    with open_backend(
        args.triton_url, args.protocol, args.local, supervise=True,
        say=lambda m: print(f"bodyshape demo: {m}", flush=True),
    ) as backend:  # fmt: skip
        if args.triton_url and not args.local:
            print(f"bodyshape demo: using Triton at {args.triton_url} ({backend.status()})", flush=True)
        demo = build_demo(backend, concurrency_limit=args.concurrency, queue_size=args.queue_size)
        shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
        print(f"bodyshape demo: open http://{shown}:{args.port} (Ctrl-C to stop)", flush=True)
        launch(demo, args.host, args.port, auth, args.max_upload_mb)
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="bodyshape demo")
    add_arguments(p)
    sys.exit(run(p.parse_args()))
