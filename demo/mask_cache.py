"""Masks of recent uploads, shared by all sessions of the page (the only cross-session state).

Gradio stores uploads by content: identical photos uploaded in two sessions share one path,
and the first request to finish deletes the file while the other still waits in the queue.
The second request then finds its masks here instead of failing with "upload it again".
Entries are keyed by (upload path, view): the path names the content, so a hit is the same
photo; nothing outside an upload path is ever looked up.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from bodyshape.photo import PhotoSilhouette

#: Masks are kept for this long, at most this many (~0.4 MB each).
RECENT_MASKS_S = 10 * 60
RECENT_MASKS_MAX = 64


class RecentMasks:
    """A small, thread-safe, time-limited LRU of (path, view) -> :class:`PhotoSilhouette`."""

    def __init__(self, max_age_s: float = RECENT_MASKS_S, max_items: int = RECENT_MASKS_MAX) -> None:
        self.max_age_s, self.max_items = max_age_s, max_items
        self._items: OrderedDict[tuple[str, str], tuple[float, PhotoSilhouette]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str, view: str) -> PhotoSilhouette | None:
        with self._lock:
            hit = self._items.get((path, view))
            return hit[1] if hit is not None and time.monotonic() - hit[0] < self.max_age_s else None

    def put(self, path: str, view: str, sil: PhotoSilhouette) -> None:
        now = time.monotonic()
        with self._lock:
            self._items[(path, view)] = (now, sil)
            self._items.move_to_end((path, view))
            while self._items and (
                len(self._items) > self.max_items
                or now - next(iter(self._items.values()))[0] > self.max_age_s
            ):
                self._items.popitem(last=False)
