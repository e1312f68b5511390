"""Every file location the project uses, each overridable by an environment variable.

The Anny model build (about 80 s on 2 cores, once) is cached under ``ANNY_CACHE_DIR``. anny
reads that variable itself at import time, so whoever imports anny calls
:func:`use_anny_cache` first; nothing here changes ``os.environ`` as a side effect of import.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent

#: Shipped trained weights (safetensors + model card), package data.
WEIGHTS_DIR = Path(os.environ.get("BODYSHAPE_WEIGHTS_DIR", PACKAGE_DIR / "weights"))

#: Triton model repository (committed; rewritten by ``bodyshape export``).
MODEL_REPOSITORY = Path(
    os.environ.get("BODYSHAPE_MODEL_REPOSITORY", REPO_DIR / "model_repository")
)

#: Where rembg looks for ``u2netp.onnx`` (rembg's own variable).
U2NET_HOME = Path(os.environ.get("U2NET_HOME", Path.home() / ".u2net"))


def anny_cache_dir() -> Path:
    """Anny's model-build cache: ``$ANNY_CACHE_DIR``, else ``~/.cache/anny``."""
    return Path(os.environ.get("ANNY_CACHE_DIR") or Path.home() / ".cache" / "anny")


def use_anny_cache() -> Path:
    """Point anny (and child processes, such as Triton's Python backend) at :func:`anny_cache_dir`.

    Call before the first ``import anny``: anny reads ``ANNY_CACHE_DIR`` when it is imported.
    """
    path = anny_cache_dir()
    os.environ["ANNY_CACHE_DIR"] = str(path)
    return path


#: Default folder of generated datasets and training runs.
DATA_DIR = Path(os.environ.get("BODYSHAPE_DATA_DIR", REPO_DIR / "data"))
RUNS_DIR = Path(os.environ.get("BODYSHAPE_RUNS_DIR", REPO_DIR / "runs"))
