"""``bodyshape demo``: the Gradio page. Photos -> rembg masks -> Triton -> Plotly mesh + measurements.

    bodyshape demo                                   # starts the bundled Triton on loopback
    bodyshape demo --triton-url 10.0.0.5:8000        # or env BODYSHAPE_TRITON_URL
    bodyshape demo --host 0.0.0.0 --auth user:pass   # expose on the network (warns)

As Python: ``build_demo(backend)`` returns the Blocks without launching it (see
:mod:`demo.backend` for backends). Uploaded photos are deleted as soon as their request is
done; only the silhouettes stay in the user's session state (so that changing the height
and pressing the button again needs no new upload).
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import hashlib
import ipaddress
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np

from bodyshape.errors import BodyShapeError
from bodyshape.photo import MAX_BYTES, PhotoSilhouette, Segmenter, check_view_pair, photo_to_silhouette
from bodyshape.reconstruct import MAX_HEIGHT_CM, MIN_HEIGHT_CM
from bodyshape.silhouette import bounding_box
from demo.backend import Backend, BackendUnavailableError, open_backend
from demo.make_assets import GUIDE, load_examples
from demo.pipeline import (
    check_height_cm,
    measurement_rows,
    mesh_figure,
    placeholder_figure,
    reconstruct_silhouettes,
    write_outputs,
)

log = logging.getLogger("bodyshape.demo")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
#: Generated downloads older than this are deleted (they are per-request copies).
OUTPUT_MAX_AGE_S = 15 * 60
#: Silhouette previews are shown enlarged by this integer factor (nearest: pixels stay exact).
PREVIEW_ZOOM = 3
#: Reconstructions run at the same time; the others wait in Gradio's queue. Chosen for 2 CPU
#: cores by `bodyshape loadtest` (8 users, interleaved 45 s rounds, one Triton; numbers in
#: docs/reliability.md): 2 workers served 0.83 req/s vs 0.70 for 1 (+18%, box fairly quiet,
#: load 3-5) and 0.66 vs 0.49 (+33%, load 7-10 from other jobs), lower latency in every round.
#: Each request gets slower with 2 (server time ~1.3 -> ~2.2 s: rembg's ONNX Runtime already
#: spreads one photo over both cores), but the single-threaded parts of one request (upload,
#: mask cleaning, Triton round trip, figure, files) overlap the other's rembg. 3+ not tried.
DEFAULT_CONCURRENCY = 2
#: Requests that may wait beyond the running ones (all events count); more are refused at once
#: with Gradio's "busy, please try again" (HTTP 503) rather than waiting for minutes. 16 users
#: (14 waiting, ~25 s each at 0.65 req/s) fit twice; 32 waiting is ~50 s at that rate.
DEFAULT_QUEUE_SIZE = 32

#: Sessions whose state Gradio keeps in memory (oldest dropped first; Gradio's default is
#: 10,000). Each holds its last outputs (the figure, ~0.55 MB of JSON) and the silhouettes
#: (~0.3 MB): about 1 MB a session, so memory stays bounded near 1 GB. A dropped session
#: only loses "press again without re-uploading".
STATE_SESSIONS = 1000

#: Masks of recent uploads kept across sessions (only for the same upload path, see
#: DemoHandler.silhouette): for this long, at most this many (~0.4 MB each).
RECENT_MASKS_S = 10 * 60
RECENT_MASKS_MAX = 64

CAPTURE_TEXT = f"""
**How to take the two photos**
1. **Front:** stand facing the camera, arms straight and held about 45° away from the body,
   feet hip-width apart, looking ahead.
2. **Side:** turn so that you face the **right edge of the picture** (right shoulder toward
   the camera), arms hanging straight down along the body, feet together.
3. Camera upright at waist height, 2–3 m away, so that the **whole body, head to feet, is in
   the picture with some space around it**. Same distance for both photos.
4. Plain wall behind you, nobody else in the picture, tight clothes (or underwear), hair tied
   back, no shoes.
5. Enter your height: it sets the size of the body ({MIN_HEIGHT_CM:.0f}–{MAX_HEIGHT_CM:.0f} cm).

Photos are used for this one computation and deleted right after it; nothing is stored.
"""


def _upload_path(payload) -> str | None:
    """The uploaded file's path from a raw (not preprocessed) gr.Image payload.

    The button's event runs with ``preprocess=False``: gr.Image's own preprocessing would
    decode the file with PIL and fail with a generic error on a non-image, while
    :func:`bodyshape.photo.load_photo` applies its own checks (not an image, too large,
    decompression bomb) and tells the user what is wrong.
    """
    if payload is None:
        return None
    if isinstance(payload, dict):
        return payload.get("path")
    return str(payload)


# ----------------------------------------------------------------------------- request handling
class DemoHandler:
    """The page's work, independent of Gradio objects (testable).

    Shared state after start-up: only :attr:`_recent` (under a lock), see :meth:`silhouette`.
    """

    def __init__(
        self, backend: Backend, segmenter: Segmenter | None = None, keep_paths: list[str] = ()
    ) -> None:
        from bodyshape.body_model import get_body_model
        from bodyshape.photo import get_segmenter

        self.backend = backend
        self.segmenter = segmenter or get_segmenter()
        from bodyshape.measurements import measure

        # Build and warm everything once at start-up, not in the first request.
        bm = get_body_model()
        measure(bm.forward(bm.sample_shapes(1, seed=0)).rest_vertices[0])
        self.segmenter(np.full((320, 240, 3), 128, np.uint8))
        self.out_root = Path(tempfile.mkdtemp(prefix="bodyshape-demo-"))
        atexit.register(shutil.rmtree, self.out_root, ignore_errors=True)
        # Files never deleted after a request: the page's own examples (by content).
        self._keep = {_sha256(Path(p)) for p in keep_paths if Path(p).is_file()}
        self._recent: OrderedDict[tuple[str, str], tuple[float, PhotoSilhouette]] = OrderedDict()
        self._recent_lock = threading.Lock()

    # -- photos
    def silhouette(self, path: str | None, view: str, cache: dict) -> PhotoSilhouette:
        if not path:
            raise BodyShapeError(f"add a {view} photo (upload one, or take one with the webcam)")
        if not os.path.exists(path):
            if path in cache:
                return cache[path]  # same upload as last time; the photo itself is already deleted
            # Gradio stores uploads by content: identical photos uploaded in two sessions share
            # one path, and the first request to finish deletes the file while the other still
            # waits in the queue. Its masks are kept here for a few minutes for that case.
            recent = self._recent_get(path, view)
            if recent is not None:
                cache[path] = recent
                return recent
        sil = photo_to_silhouette(path, view, self.segmenter)
        # Keep only masks in the session, never the photo; of the full mask only the person's
        # box (all the view-pair check reads), to keep each session small (see STATE_SESSIONS).
        top, bottom, left, right = bounding_box(sil.mask)
        box = sil.mask[top:bottom, left:right].copy()
        cache[path] = dataclasses.replace(
            sil, image=np.zeros((0, 0, 3), np.uint8), probability=np.zeros((0, 0), np.uint8), mask=box
        )
        self._recent_put(path, view, cache[path])
        return sil

    def _recent_get(self, path: str, view: str) -> PhotoSilhouette | None:
        with self._recent_lock:
            hit = self._recent.get((path, view))
            return hit[1] if hit is not None and time.monotonic() - hit[0] < RECENT_MASKS_S else None

    def _recent_put(self, path: str, view: str, sil: PhotoSilhouette) -> None:
        now = time.monotonic()
        with self._recent_lock:
            self._recent[(path, view)] = (now, sil)
            self._recent.move_to_end((path, view))
            while self._recent and (
                len(self._recent) > RECENT_MASKS_MAX
                or now - next(iter(self._recent.values()))[0] > RECENT_MASKS_S
            ):
                self._recent.popitem(last=False)

    def forget_photos(self, *paths: str | None) -> None:
        """Delete uploaded photos (only files in Gradio's upload folder, never the examples)."""
        from gradio.utils import get_upload_folder

        upload = Path(get_upload_folder()).resolve()
        for p in paths:
            if not p:
                continue
            path = Path(p).resolve()
            if upload not in path.parents or not path.is_file() or _sha256(path) in self._keep:
                continue
            try:
                path.unlink()
                path.parent.rmdir()  # Gradio keeps each upload in its own folder
            except OSError:
                pass  # folder not empty or already gone: nothing more to delete

    def close(self) -> None:
        """Delete every generated download (also done at exit)."""
        shutil.rmtree(self.out_root, ignore_errors=True)

    def _purge_outputs(self) -> None:
        cutoff = time.time() - OUTPUT_MAX_AGE_S
        for d in self.out_root.iterdir():
            if d.stat().st_mtime < cutoff:
                shutil.rmtree(d, ignore_errors=True)

    # -- the button
    def run(self, front_path, side_path, height_cm, units, cache):
        """-> (status markdown, front preview, side preview, figure, table rows, files, measurements, cache)."""
        t0 = time.perf_counter()
        cache = dict(cache or {})
        previews: list = [None, None]
        new_cache = {}
        try:
            height_m = check_height_cm(height_cm)
            front = self.silhouette(front_path, "front", cache)
            new_cache[front_path] = cache[front_path]
            previews[0] = _preview(front.silhouette)
            side = self.silhouette(side_path, "side", cache)
            new_cache[side_path] = cache[side_path]
            previews[1] = _preview(side.silhouette)
            check_view_pair(front, side)
            t_photos = time.perf_counter() - t0
            rembg = sum(s.timings.get("rembg", 0.0) for s in (front, side) if s.image.size)
            result = reconstruct_silhouettes(
                front, side, height_m, self.backend, {"photos": t_photos, "rembg": rembg}
            )
            t_fig = time.perf_counter()
            fig = mesh_figure(result.vertices, result.faces)
            rows = _table(result.measurements, units)
            self._purge_outputs()
            out_dir = self.out_root / uuid.uuid4().hex
            files = [str(p) for p in write_outputs(result, out_dir).values()]
            t_end = time.perf_counter()
            tm = result.timings
            status = (
                f"**Done in {t_end - t0:.2f} s** on the server: background removal {tm['rembg']:.2f} s "
                f"(photos total {tm['photos']:.2f} s), body model ({self.backend.name}) {tm['model']:.2f} s, "
                f"measurements {tm['measure']:.2f} s, figure and files {t_end - t_fig:.2f} s."
            )
            log.info("reconstruct ok: %s", status)
            return status, previews[0], previews[1], fig, rows, files, result.measurements, new_cache
        except BackendUnavailableError as e:
            return _failure(_sentence(str(e)), previews, new_cache)
        except BodyShapeError as e:
            return _failure(_sentence(str(e)), previews, new_cache)
        except Exception:  # a bug: log it, never show a stack trace to the user
            log.exception("reconstruct failed")
            return _failure(
                "Something went wrong on our side (it has been logged). Please try again.",
                previews,
                new_cache,
            )
        finally:
            self.forget_photos(front_path, side_path)

    def table(self, measurements, units):
        return _table(measurements or {}, units)


def _table(measurements: dict[str, float], units: str):
    import pandas as pd

    return pd.DataFrame(measurement_rows(measurements, units), columns=["Measurement", units])


def _sentence(msg: str) -> str:
    return msg[:1].upper() + msg[1:] + ("" if msg.endswith(".") else ".")


def _failure(message: str, previews, cache):
    import gradio as gr

    gr.Warning(message)
    return f"**Error:** {message}", previews[0], previews[1], None, _table({}, "cm"), None, {}, cache


def _preview(sil: np.ndarray) -> np.ndarray:
    big = cv2.resize(sil, None, fx=PREVIEW_ZOOM, fy=PREVIEW_ZOOM, interpolation=cv2.INTER_NEAREST)
    return np.ascontiguousarray(big)


def _sha256(path: Path) -> str:
    if path.stat().st_size > MAX_BYTES:
        return ""
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- the page
def build_demo(
    backend: Backend,
    segmenter: Segmenter | None = None,
    *,
    concurrency_limit: int = DEFAULT_CONCURRENCY,
    queue_size: int = DEFAULT_QUEUE_SIZE,
):
    """The Gradio Blocks of the page (not launched), its queue set up.

    ``concurrency_limit`` reconstructions run at once; up to ``queue_size`` more wait (no
    timeout on either side: Gradio's queue, its browser client and gradio_client wait as long
    as it takes); beyond that a request is refused at once with "busy, please try again".
    """
    import gradio as gr

    if concurrency_limit < 1 or queue_size < 1:
        raise BodyShapeError("the concurrency limit and the queue size must be at least 1")

    examples = load_examples()
    handler = DemoHandler(backend, segmenter, keep_paths=[e[v] for e in examples for v in ("front", "side")])
    sources = ["upload", "webcam", "clipboard"]

    with gr.Blocks(
        title="bodyshape: 3D body from two photos", analytics_enabled=False, delete_cache=(600, 900)
    ) as demo:
        gr.Markdown(
            "# 3D body shape from two photos\n"
            "Upload a front and a side photo, type your height, press **Reconstruct**. "
            "You get a 3D body you can rotate, its measurements and the mesh as OBJ/GLB."
        )
        with gr.Accordion("How to take the photos (pose and framing)", open=True):
            with gr.Row():
                gr.Image(str(GUIDE), show_label=False, interactive=False, container=False, scale=3,
                         buttons=[])  # fmt: skip
                gr.Markdown(CAPTURE_TEXT)
        with gr.Row():
            front = gr.Image(
                label="Front photo", sources=sources, type="filepath", height=360, elem_id="front_photo"
            )
            side = gr.Image(
                label="Side photo", sources=sources, type="filepath", height=360, elem_id="side_photo"
            )
            with gr.Column():
                height = gr.Number(
                    label=f"Your height (cm, {MIN_HEIGHT_CM:.0f}–{MAX_HEIGHT_CM:.0f})",
                    value=None, minimum=None, maximum=None, elem_id="height_cm",
                )  # fmt: skip
                units = gr.Radio(["cm", "in"], value="cm", label="Show measurements in", elem_id="units")
                button = gr.Button("Reconstruct", variant="primary", elem_id="reconstruct")
                status = gr.Markdown("", elem_id="status")
        with gr.Row():
            with gr.Column(scale=1):
                gr.Markdown("**What the network sees** (normalised 128×96 silhouettes)")
                with gr.Row():
                    front_sil = gr.Image(label="front", interactive=False, height=260, elem_id="front_sil",
                                         image_mode="L", format="png")  # fmt: skip
                    side_sil = gr.Image(label="side", interactive=False, height=260, elem_id="side_sil",
                                        image_mode="L", format="png")  # fmt: skip
            with gr.Column(scale=2):
                plot = gr.Plot(placeholder_figure(), label="3D body (drag to rotate)", elem_id="mesh_plot")
            with gr.Column(scale=1):
                table = gr.Dataframe(
                    headers=["Measurement", "cm"], datatype=["str", "number"],
                    label="Measurements", interactive=False, elem_id="measurements",
                )  # fmt: skip
                files = gr.File(label="Downloads (mesh OBJ/GLB in metres, measurements CSV/JSON)",
                                file_count="multiple", interactive=False, elem_id="downloads")  # fmt: skip
        gr.Examples(
            [[e["front"], e["side"], e["height_cm"]] for e in examples],
            inputs=[front, side, height],
            label="Examples (synthetic bodies; press Reconstruct after choosing one)",
        )
        backend_status = gr.Markdown("", elem_id="backend_status")
        measurements = gr.State({})
        cache = gr.State({})

        def on_click(front_payload, side_payload, height_cm, unit, session_cache):
            return handler.run(
                _upload_path(front_payload), _upload_path(side_payload), height_cm, unit, session_cache
            )

        button.click(
            on_click,
            inputs=[front, side, height, units, cache],
            outputs=[status, front_sil, side_sil, plot, table, files, measurements, cache],
            api_name="reconstruct",
            show_progress="full",
            preprocess=False,
        )
        units.change(handler.table, inputs=[measurements, units], outputs=table, api_name=False)
        demo.load(lambda: f"Model: {backend.status()}", outputs=backend_status, api_name=False)
    demo.queue(default_concurrency_limit=concurrency_limit, max_size=queue_size)
    demo.handler = handler  # for tests
    blocks_close = demo.close

    def close(*args, **kwargs) -> None:  # closing the page also deletes its generated files
        try:
            blocks_close(*args, **kwargs)
        finally:
            handler.close()

    demo.close = close
    return demo


# ----------------------------------------------------------------------------- CLI
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


def launch(demo, host: str, port: int, auth: tuple[str, str] | None, max_upload_mb: float, **kwargs):
    kwargs.setdefault("state_session_capacity", STATE_SESSIONS)
    return demo.launch(
        server_name=host, server_port=port, auth=auth, max_file_size=f"{int(max_upload_mb * 1024)}kb",
        show_error=False, run_history=False, footer_links=[], **kwargs,
    )  # fmt: skip


def private_upload_dir() -> Path:
    """Gradio's upload and cache folder for this process: private (0700), removed at exit.

    Gradio's default, ``<tmp>/gradio``, is shared by every Gradio app on the machine and
    readable by all local users (0755 folders, 0644 files): uploaded photos could be read while
    they wait in the queue, and another app deletes, when it shuts down, every upload it ever
    received, even when the same path (Gradio names uploads by content) is now this page's.
    An explicit ``GRADIO_TEMP_DIR`` is kept. Call before the page is built.
    """
    if os.environ.get("GRADIO_TEMP_DIR"):
        return Path(os.environ["GRADIO_TEMP_DIR"])
    folder = Path(tempfile.mkdtemp(prefix="bodyshape-gradio-"))
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warn_if_exposed(host: str, auth: tuple[str, str] | None) -> bool:
    """Warn (UserWarning) when the page is bound to a non-loopback address; True if it warned."""
    if is_loopback(host):
        return False
    warnings.warn(
        f"binding the demo to {host}: anyone who can reach this machine can use it"
        + ("" if auth else " (no --auth given: no login)"),
        stacklevel=2,
    )
    return True


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    auth = None
    if args.auth:
        user, sep, password = args.auth.partition(":")
        if not sep or not user or not password:
            raise BodyShapeError("--auth must be USER:PASSWORD")
        auth = (user, password)
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
