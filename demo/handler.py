"""The page's work, independent of Gradio objects (testable): one press of *Reconstruct*.

:meth:`DemoHandler.run` never raises: it returns a :class:`Reconstruction` (a body) or a
:class:`Failure` (a friendly message, never a stack trace). :mod:`demo.page` turns either
into the page's outputs, and a failure into a ``gr.Error`` for API clients.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from bodyshape.capture import CaptureCheck, marked_preview
from bodyshape.clothing import DEFAULT_CLOTHING, check_clothing
from bodyshape.errors import BodyShapeError
from bodyshape.photo import PhotoSilhouette, Segmenter, check_view_pair, photo_to_silhouette
from bodyshape.reconstruct import check_height_cm
from bodyshape.silhouette import bounding_box
from demo.backend import Backend
from demo.files import Downloads, Uploads
from demo.mask_cache import RecentMasks
from demo.pipeline import (
    HOW_TO_HEADER,
    RANGE_HEADER,
    Result,
    measurement_rows,
    mesh_figure,
    reconstruct_silhouettes,
    write_outputs,
)

log = logging.getLogger("bodyshape.demo")

#: Silhouette previews are shown enlarged by this integer factor (nearest: pixels stay exact).
PREVIEW_ZOOM = 3
#: What an unexpected exception (a bug, logged on the server) tells the user.
INTERNAL_ERROR = "Something went wrong on our side (it has been logged). Please try again."


@dataclass(frozen=True)
class Reconstruction:
    """A served request: everything the page shows."""

    status: str  # markdown, "**Done in 1.23 s** on the server: ..." (timings per step)
    front_preview: np.ndarray  # (128, 96) x PREVIEW_ZOOM uint8: what the network saw
    side_preview: np.ndarray
    figure: Any  # plotly Figure of the mesh
    table: Any  # pandas DataFrame [Measurement, <units>, 80% range, How to measure it yourself]
    files: list[str]  # OBJ, GLB, CSV, JSON
    measurements: dict[str, float]  # metres
    intervals: dict[str, tuple[float, float]]  # metres, each measurement's 80% interval
    cache: dict[str, PhotoSilhouette]  # the session's masks by upload path (no photo pixels)
    feedback: str = ""  # markdown: the capture checks' warnings (what to do), or that all passed


@dataclass(frozen=True)
class Failure:
    """A refused request: the message says what to do; previews of the photos that passed."""

    message: str  # a sentence for the user ("Height must be between ...")
    front_preview: np.ndarray | None
    side_preview: np.ndarray | None
    cache: dict[str, PhotoSilhouette]

    @property
    def status(self) -> str:
        return f"**Error:** {self.message}"

    @property
    def feedback(self) -> str:
        return ""


PageResult = Reconstruction | Failure


def measurement_table(measurements: dict[str, float], units: str, intervals: dict[str, tuple[float, float]] | None = None):
    """The measurements as the page's table (a DataFrame; empty for no body): label, value in
    ``units``, its 80% range, how to measure it yourself."""
    import pandas as pd

    return pd.DataFrame(measurement_rows(measurements, units, intervals),
                        columns=["Measurement", units, RANGE_HEADER, HOW_TO_HEADER])  # fmt: skip


class DemoHandler:
    """Photos + height -> :class:`PageResult`, with the page's file and session rules.

    Shared state after start-up: only :attr:`recent` (thread-safe), see :meth:`silhouette`.
    """

    def __init__(
        self, backend: Backend, segmenter: Segmenter | None = None, keep_paths: list[str] = ()
    ) -> None:
        from bodyshape.photo import get_segmenter

        self.backend = backend
        self.segmenter = segmenter or get_segmenter()
        self._warm_up()
        self.downloads = Downloads()
        self.uploads = Uploads(keep_paths)  # never delete the page's own examples
        self.recent = RecentMasks()

    def _warm_up(self) -> None:
        """Build and run everything once at start-up, not in the first request."""
        from bodyshape.body_model import get_body_model
        from bodyshape.clothing import CLOTHING
        from bodyshape.measurements import measure
        from demo.pipeline import get_correction, get_intervals

        bm = get_body_model()
        measure(bm.forward(bm.sample_shapes(1, seed=0)).rest_vertices[0])
        get_intervals()  # a missing or unreadable file stops the start, not a request
        for clothing in CLOTHING:
            get_correction(clothing)
        self.segmenter(np.full((320, 240, 3), 128, np.uint8))

    @property
    def out_root(self):
        """The folder of generated downloads (private, removed by :meth:`close`)."""
        return self.downloads.root

    # -- photos
    def silhouette(self, path: str | None, view: str, cache: dict) -> PhotoSilhouette:
        """The checked silhouette of one upload; puts its masks in ``cache`` (the session's)."""
        if not path:
            raise BodyShapeError(f"add a {view} photo (upload one, or take one with the webcam)")
        if not os.path.exists(path):
            if path in cache:
                return cache[path]  # same upload as last time; the photo itself is already deleted
            recent = self.recent.get(path, view)  # the same upload from another session
            if recent is not None:
                cache[path] = recent
                return recent
        sil = photo_to_silhouette(path, view, self.segmenter)
        # Keep only masks in the session, never the photo; of the full mask only the person's
        # box (all the view-pair and capture checks read), to keep each session small (see
        # STATE_SESSIONS). The image keeps its height and width but no pixels: (H, W, 0).
        top, bottom, left, right = bounding_box(sil.mask)
        box = sil.mask[top:bottom, left:right].copy()
        h, w = sil.image.shape[:2]
        cache[path] = dataclasses.replace(
            sil, image=np.zeros((h, w, 0), np.uint8), probability=np.zeros((0, 0), np.uint8), mask=box
        )
        self.recent.put(path, view, cache[path])
        return sil

    def forget_photos(self, *paths: str | None) -> None:
        """Delete uploaded photos (only files in Gradio's upload folder, never the examples)."""
        self.uploads.forget(*paths)

    def close(self) -> None:
        """Delete every generated download (also done at exit)."""
        self.downloads.close()

    # -- the button
    def run(self, front_path: str | None, side_path: str | None, height_cm: object, units: str,
            cache: dict | None, clothing: object = DEFAULT_CLOTHING) -> PageResult:  # fmt: skip
        """One press of the button. Never raises; the uploads are deleted in every case."""
        t0 = time.perf_counter()
        old, new = dict(cache or {}), {}  # the session keeps the masks of this request only
        previews: list[np.ndarray | None] = [None, None]
        try:
            height_m = check_height_cm(height_cm)
            worn = check_clothing(DEFAULT_CLOTHING if clothing is None else str(clothing))
            sils = []
            for i, (path, view) in enumerate(((front_path, "front"), (side_path, "side"))):
                sils.append(self.silhouette(path, view, old))
                new[path] = old[path]
                previews[i] = marked_preview(sils[-1].silhouette, view, [], PREVIEW_ZOOM)
            check_view_pair(*sils)
            rembg = sum(s.timings.get("rembg", 0.0) for s in sils if s.image.size)
            timings = {"photos": time.perf_counter() - t0, "rembg": rembg}
            result = reconstruct_silhouettes(*sils, height_m, self.backend, timings, worn)
            return self._served(result, previews, units, new, t0)
        except BodyShapeError as e:  # the backend's "not reachable" included
            return Failure(_sentence(str(e)), *previews, new)
        except Exception:  # a bug: log it, never show a stack trace to the user
            log.exception("reconstruct failed")
            return Failure(INTERNAL_ERROR, *previews, new)
        finally:
            self.forget_photos(front_path, side_path)

    def _served(self, result: Result, previews: list, units: str, cache: dict, t0: float) -> Reconstruction:
        """The model's answer -> figure, table, download files and the timing line."""
        t_fig = time.perf_counter()
        fig = mesh_figure(result.vertices, result.faces)
        table = measurement_table(result.measurements, units, result.intervals)
        files = [str(p) for p in write_outputs(result, self.downloads.new_folder()).values()]
        front, side = (marked_preview(getattr(result, v).silhouette, v, result.checks, PREVIEW_ZOOM)
                       for v in ("front", "side"))  # fmt: skip
        t_end = time.perf_counter()
        tm = result.timings
        status = (
            f"**Done in {t_end - t0:.2f} s** on the server: background removal {tm['rembg']:.2f} s "
            f"(photos total {tm['photos']:.2f} s), capture checks {1000 * tm['checks']:.1f} ms, "
            f"body model ({self.backend.name}) {tm['model']:.2f} s, "
            f"measurements {tm['measure']:.2f} s, figure and files {t_end - t_fig:.2f} s."
        )
        if result.clothing != DEFAULT_CLOTHING:
            status += f" Clothing *{result.clothing}*: the body is fitted under the cloth allowance (wider ranges)."
        log.info("reconstruct ok: %s", status)
        return Reconstruction(status, front, side, fig, table, files, result.measurements, result.intervals, cache,
                              feedback_markdown(result.checks))  # fmt: skip

    def table(self, shown: dict | None, units: str):
        """The table again in other units (the units radio's event). ``shown``: the page's state,
        ``{"measurements": ..., "intervals": ...}`` of the body on the page (empty: none)."""
        shown = shown or {}
        return measurement_table(shown.get("measurements", {}), units, shown.get("intervals"))


def feedback_markdown(checks: list[CaptureCheck]) -> str:
    """The capture checks for the page: each warning (what to do), or one line saying all passed."""
    failed = [c for c in checks if not c.passed]
    if not failed:
        return f"**Photos checked:** pose, stance, posture, framing, the outline and the pair look right ({len(checks)} checks passed)."
    items = "\n".join(f"- {c.message}" for c in failed)
    return (
        f"**⚠ Check your photos** ({len(failed)} of {len(checks)} capture checks failed; the result below "
        f"may be less accurate, its 80% ranges are wider, and the problem is marked in red on the silhouettes):\n{items}"
    )


def _sentence(msg: str) -> str:
    return msg[:1].upper() + msg[1:] + ("" if msg.endswith(".") else ".")
