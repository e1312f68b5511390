"""The Gradio page: layout, the one adapter from handler results to its outputs, launching.

``build_demo(backend)`` returns the Blocks without launching it; ``serve_page(backend)``
launches it on loopback and a free port for tests and the load test; ``bodyshape demo``
(:mod:`demo.app`) launches it for people.

The *Reconstruct* event is the page's API (``/reconstruct``, e.g. with ``gradio_client``): a
served request returns the outputs in :data:`OUTPUT_NAMES` order; a refused one (bad photo,
height, model server down) fails with ``gr.Error(<friendly message>)`` — ``gradio_client``
raises ``AppError`` with that message — after the page has shown the message in its status line
(and the checked photos' silhouettes). The page also shows it in an error toast.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bodyshape import capture
from bodyshape.clothing import CLOTHING, DEFAULT_CLOTHING
from bodyshape.errors import BodyShapeError
from bodyshape.photo import MAX_BYTES, Segmenter
from bodyshape.reconstruct import MAX_HEIGHT_CM, MIN_HEIGHT_CM
from demo.backend import Backend
from demo.files import upload_path
from demo.handler import DemoHandler, Failure, PageResult, measurement_table
from demo.make_assets import GUIDE, load_examples
from demo.pipeline import HOW_TO_HEADER, RANGE_HEADER, placeholder_figure

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

#: The *Reconstruct* event's outputs, in order: the names of the components in build_demo.
OUTPUT_NAMES = (
    "status",
    "feedback",  # the capture checks (API clients: second, so the body's outputs stay last)
    "front_preview",
    "side_preview",
    "figure",
    "table",
    "files",
    "measurements",
    "cache",
)

def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


#: The capture guide: its pose and framing steps are the instructions the capture checks'
#: warnings end with (bodyshape.capture.GUIDE), so the two cannot drift apart.
CAPTURE_TEXT = f"""
**How to take the two photos**
1. **Front:** {capture.GUIDE["front_turned"]}; {capture.GUIDE["front_arms"]}; {capture.GUIDE["front_feet"]}; {capture.GUIDE["front_tilt"]}.
2. **Side:** {capture.GUIDE["side_turned"]}; {capture.GUIDE["side_arms"]}; {capture.GUIDE["side_lean"]}.
3. Camera at waist height, 2–3 m away: {capture.GUIDE["framing"]}. Same distance for both photos.
4. {_capital(capture.GUIDE["same_person"])}. {_capital(capture.GUIDE["side_outline"])}; nobody else in
   the picture, tight clothes (or underwear), no shoes.
5. Enter your height: it sets the size of the body ({MIN_HEIGHT_CM:.0f}–{MAX_HEIGHT_CM:.0f} cm).
6. Say what you wear: skin-tight gives the best numbers; for a T-shirt and shorts that follow the
   body choose *fitted*: the body is then fitted under an allowance for the cloth, with wider
   ranges. Loose clothes hide the body: change first.

After *Reconstruct* the photos are checked against this guide; a warning says what to change
and marks the problem on the silhouettes, and the result is still shown.

The measurements are defined as ISO 8559-1 (the clothing-size standard) defines them, the way a
tape measure takes them; the table says how to take each one yourself, to compare.

Photos are used for this one computation and deleted right after it; nothing is stored.
"""


def output_values(result: PageResult) -> tuple:
    """The one adapter from a handler result to the event's outputs (:data:`OUTPUT_NAMES`).

    A failure clears the body of an earlier request (figure, table, files) and keeps the
    previews of the photos that were checked.
    """
    if isinstance(result, Failure):
        shown: dict[str, Any] = dict(
            figure=None, table=measurement_table({}, "cm"), files=None, measurements={}
        )
    else:
        shown = dict(
            figure=result.figure, table=result.table, files=result.files,
            measurements={"measurements": result.measurements, "intervals": result.intervals},
        )
    values = dict(status=result.status, front_preview=result.front_preview, side_preview=result.side_preview,
                  cache=result.cache, feedback=result.feedback, **shown)  # fmt: skip
    return tuple(values[name] for name in OUTPUT_NAMES)


# ----------------------------------------------------------------------------- layout
def _header() -> None:
    import gradio as gr

    gr.Markdown(
        "# 3D body shape from two photos\n"
        "Upload a front and a side photo, type your height, press **Reconstruct**. "
        "You get a 3D body you can rotate, its measurements (cm or inches) and the mesh as OBJ/GLB."
    )
    with gr.Accordion("How to take the photos (pose and framing)", open=True):
        with gr.Row():
            gr.Image(str(GUIDE), show_label=False, interactive=False, container=False, scale=3,
                     buttons=[])  # fmt: skip
            gr.Markdown(CAPTURE_TEXT)


def _inputs() -> dict[str, Any]:
    """Photos, height, units, the button and the status line."""
    import gradio as gr

    sources = ["upload", "webcam", "clipboard"]
    c: dict[str, Any] = {}
    with gr.Row():
        c["front"] = gr.Image(
            label="Front photo", sources=sources, type="filepath", height=360, elem_id="front_photo"
        )
        c["side"] = gr.Image(
            label="Side photo", sources=sources, type="filepath", height=360, elem_id="side_photo"
        )
        with gr.Column():
            c["height"] = gr.Number(
                label=f"Your height (cm, {MIN_HEIGHT_CM:.0f}–{MAX_HEIGHT_CM:.0f})",
                value=None, minimum=None, maximum=None, elem_id="height_cm",
            )  # fmt: skip
            c["clothing"] = gr.Radio(
                [(f"{k}: {v}", k) for k, v in CLOTHING.items()], value=DEFAULT_CLOTHING,
                label="What are you wearing in the photos?", elem_id="clothing",
            )  # fmt: skip
            c["units"] = gr.Radio(["cm", "in"], value="cm", label="Show measurements in", elem_id="units")
            c["button"] = gr.Button("Reconstruct", variant="primary", elem_id="reconstruct")
            c["status"] = gr.Markdown("", elem_id="status")
    return c


def _results() -> dict[str, Any]:
    """Silhouette previews, the 3D plot, the table and the downloads."""
    import gradio as gr

    c: dict[str, Any] = {}
    # The capture checks' warnings, right above the silhouettes they mark and the result.
    c["feedback"] = gr.Markdown("", elem_id="capture_feedback")
    with gr.Row():
        with gr.Column(scale=1):
            gr.Markdown("**What the network sees** (normalised 128×96 silhouettes; capture problems marked in red)")
            with gr.Row():
                c["front_preview"] = gr.Image(label="front", interactive=False, height=260, elem_id="front_sil",
                                              image_mode="RGB", format="png")  # fmt: skip
                c["side_preview"] = gr.Image(label="side", interactive=False, height=260, elem_id="side_sil",
                                             image_mode="RGB", format="png")  # fmt: skip
        with gr.Column(scale=2):
            c["figure"] = gr.Plot(placeholder_figure(), label="3D body (drag to rotate)", elem_id="mesh_plot")
        with gr.Column(scale=1):
            c["files"] = gr.File(label="Downloads (mesh OBJ/GLB in metres, measurements CSV/JSON in cm and inches)",
                                 file_count="multiple", interactive=False, elem_id="downloads")  # fmt: skip
    # Full width: each row also says how to take the measurement yourself. Tall enough to show
    # every row without a scroll bar (Gradio's default max_height is 500 px).
    c["table"] = gr.Dataframe(
        headers=["Measurement", "cm", RANGE_HEADER, HOW_TO_HEADER], datatype=["str", "number", "str", "str"],
        label="Measurements (ISO 8559-1 definitions, as a tape measure takes them)", interactive=False,
        elem_id="measurements", wrap=True, column_widths=["16%", "8%", "13%", "63%"], max_height=2000,
    )  # fmt: skip
    return c


def _wire(c: dict[str, Any], handler: DemoHandler, backend: Backend, demo) -> None:
    """The events: the button (the ``/reconstruct`` API), the units radio, the model status."""
    import gradio as gr

    def on_click(front_payload, side_payload, height_cm, unit, session_cache, clothing=DEFAULT_CLOTHING):
        result = handler.run(
            upload_path(front_payload), upload_path(side_payload), height_cm, unit, session_cache, clothing
        )
        yield output_values(result)  # the page shows the status line, previews, session masks
        if isinstance(result, Failure):  # ... and an API client gets an error, not a "success"
            raise gr.Error(html.escape(result.message, quote=False), print_exception=False)

    c["button"].click(
        on_click,
        inputs=[c["front"], c["side"], c["height"], c["units"], c["cache"], c["clothing"]],
        outputs=[c[name] for name in OUTPUT_NAMES],
        api_name="reconstruct",
        show_progress="full",
        preprocess=False,
    )
    c["units"].change(
        handler.table, inputs=[c["measurements"], c["units"]], outputs=c["table"], api_name=False
    )
    demo.load(lambda: f"Model: {backend.status()}", outputs=c["backend_status"], api_name=False)


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
    ``demo.handler`` is the :class:`DemoHandler`; closing the page deletes its downloads.
    """
    import gradio as gr

    if concurrency_limit < 1 or queue_size < 1:
        raise BodyShapeError("the concurrency limit and the queue size must be at least 1")
    examples = load_examples()
    handler = DemoHandler(backend, segmenter, keep_paths=[e[v] for e in examples for v in ("front", "side")])
    with gr.Blocks(
        title="bodyshape: 3D body from two photos", analytics_enabled=False, delete_cache=(600, 900)
    ) as demo:
        _header()
        c = _inputs() | _results()
        gr.Examples(
            [[e["front"], e["side"], e["height_cm"]] for e in examples],
            inputs=[c["front"], c["side"], c["height"]],
            label="Examples (synthetic bodies; press Reconstruct after choosing one)",
        )
        c["backend_status"] = gr.Markdown("", elem_id="backend_status")
        c["measurements"], c["cache"] = gr.State({}), gr.State({})
        _wire(c, handler, backend, demo)
    # api_open=False: the queue is the only way in. The direct REST route (/gradio_api/run/...)
    # would skip the concurrency limit and the queue size, and of the button's two-step event
    # (outputs, then the error) it returns only the first step, as a success.
    demo.queue(default_concurrency_limit=concurrency_limit, max_size=queue_size, api_open=False)
    demo.handler = handler
    blocks_close = demo.close

    def close(*args, **kwargs) -> None:  # closing the page also deletes its generated files
        try:
            set_stop_event_on_its_loop(demo)
            blocks_close(*args, **kwargs)
        finally:
            handler.close()

    demo.close = close
    return demo


def set_stop_event_on_its_loop(demo, timeout_s: float = 5.0) -> None:
    """Set the app's ``stop_event`` (an ``asyncio.Event``) on the server's event loop.

    Gradio's ``Blocks.close`` sets it from the calling thread while the server's loop, in
    another thread, adds and removes heartbeat waiters: now and then ``set()`` then fails
    with "deque mutated during iteration" and the server is left running (seen once in CI,
    tests/test_load.py). Set on its own loop first, ``close``'s own ``set()`` finds it set
    and does nothing.
    """
    event = getattr(getattr(demo, "app", None), "stop_event", None)
    loop = getattr(event, "_loop", None)  # bound when the first waiter registered
    if not isinstance(event, asyncio.Event) or loop is None or not loop.is_running():
        return  # no waiters bound to a running loop: nothing can race
    done = threading.Event()

    def set_it() -> None:
        event.set()
        done.set()

    try:
        loop.call_soon_threadsafe(set_it)
    except RuntimeError:  # the loop closed meanwhile: no waiters left to race
        return
    done.wait(timeout_s)


# ----------------------------------------------------------------------------- launching
def launch(demo, host: str, port: int, auth: tuple[str, str] | None, max_upload_mb: float, **kwargs):
    """``demo.launch`` with the page's settings (no error details, no run history, bounded sessions)."""
    kwargs.setdefault("state_session_capacity", STATE_SESSIONS)
    return demo.launch(
        server_name=host, server_port=port, auth=auth, max_file_size=f"{int(max_upload_mb * 1024)}kb",
        show_error=False, run_history=False, footer_links=[], **kwargs,
    )  # fmt: skip


@dataclass
class ServedPage:
    url: str  # http://127.0.0.1:PORT
    port: int
    demo: Any  # the launched Blocks (demo.handler: the DemoHandler)


@contextlib.contextmanager
def serve_page(
    backend: Backend,
    concurrency: int | None = None,
    queue_size: int | None = None,
    auth: tuple[str, str] | None = None,
    max_upload_mb: float | None = None,
) -> Iterator[ServedPage]:
    """The page on ``backend``, launched on 127.0.0.1 and a free port, in this process.

    Closes the page afterwards (its generated files included). For tests and the load test.
    """
    from bodyshape.triton_server import free_port

    demo = build_demo(
        backend,
        concurrency_limit=concurrency or DEFAULT_CONCURRENCY,
        queue_size=queue_size or DEFAULT_QUEUE_SIZE,
    )
    port = free_port()
    mb = max_upload_mb if max_upload_mb is not None else MAX_BYTES / 2**20
    launch(demo, "127.0.0.1", port, auth, mb, prevent_thread_lock=True, quiet=True)
    try:
        yield ServedPage(f"http://127.0.0.1:{port}", port, demo)
    finally:
        demo.close(verbose=False)
