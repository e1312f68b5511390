"""Every file location the project uses, each overridable by an environment variable.

The Anny model build (about 35 s on 2 cores) is cached under ``ANNY_CACHE_DIR``; anny reads
that variable itself at import time, so we set a project default *before* importing anny.
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

#: Anny's model-build cache.
ANNY_CACHE_DIR = Path(os.environ.setdefault("ANNY_CACHE_DIR", str(Path.home() / ".cache" / "anny")))

#: Default folder of generated datasets and training runs.
DATA_DIR = Path(os.environ.get("BODYSHAPE_DATA_DIR", REPO_DIR / "data"))
RUNS_DIR = Path(os.environ.get("BODYSHAPE_RUNS_DIR", REPO_DIR / "runs"))
