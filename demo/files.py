"""The life of the page's files: uploaded photos (deleted after their request) and generated
downloads (per-request folders, deleted after a while and when the page closes)."""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from bodyshape.photo import MAX_BYTES

#: Generated downloads older than this are deleted (they are per-request copies).
OUTPUT_MAX_AGE_S = 15 * 60


def upload_path(payload: object) -> str | None:
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


def sha256_of(path: Path) -> str:
    """The file's SHA-256 ("" for a file over the upload limit: never one of ours)."""
    if path.stat().st_size > MAX_BYTES:
        return ""
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Uploads:
    """Deletes uploaded photos once their request is done.

    Only files inside Gradio's upload folder are touched, and never one whose content is in
    ``keep`` (the page's own example photos, which Gradio serves from that folder too).
    """

    def __init__(self, keep_paths: Iterable[str] = ()) -> None:
        self._keep = {sha256_of(Path(p)) for p in keep_paths if Path(p).is_file()}

    def forget(self, *paths: str | None) -> None:
        from gradio.utils import get_upload_folder

        upload = Path(get_upload_folder()).resolve()
        for p in paths:
            if not p:
                continue
            path = Path(p).resolve()
            if upload not in path.parents or not path.is_file() or sha256_of(path) in self._keep:
                continue
            with contextlib.suppress(OSError):  # folder not empty or already gone: nothing more to do
                path.unlink()
                path.parent.rmdir()  # Gradio keeps each upload in its own folder


class Downloads:
    """The generated downloads: one private folder (mkdtemp, 0700) with a folder per request.

    Folders older than :data:`OUTPUT_MAX_AGE_S` are removed when a new one is made; all of it
    goes on :meth:`close` (also registered at exit).
    """

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="bodyshape-demo-"))
        atexit.register(shutil.rmtree, self.root, ignore_errors=True)

    def new_folder(self) -> Path:
        """A fresh folder for one request's files (not created yet), after purging old ones."""
        cutoff = time.time() - OUTPUT_MAX_AGE_S
        for d in self.root.iterdir():
            with contextlib.suppress(FileNotFoundError):  # another request purged it first
                if d.stat().st_mtime < cutoff:
                    shutil.rmtree(d, ignore_errors=True)
        return self.root / uuid.uuid4().hex

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
