"""Security defaults of the page: who can reach it, who may log in, where uploads live.

Used by ``bodyshape demo`` (:mod:`demo.app`) and ``bodyshape loadtest`` (:mod:`demo.loadtest`).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from bodyshape.errors import BodyShapeError
from bodyshape.loopback import is_loopback


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """``USER:PASSWORD`` (the ``--auth`` flag) -> (user, password); None when not given."""
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise BodyShapeError("--auth must be USER:PASSWORD")
    return user, password


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
