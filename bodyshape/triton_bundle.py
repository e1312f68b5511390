"""The ``tritonserver`` 2.51 binary of the nvidia-pytriton wheel: where it is and how to run it.

The wheel ships the server, its libraries and the Python backend, but does not set them up
for a plain process; what a start needs (docs/serving.md, "The bundled server"):

- ``LD_LIBRARY_PATH`` -> the wheel's ``nvidia_pytriton.libs``;
- a backends folder with the Python backend and the stub built for *this* Python;
- the running environment's ``bin`` first on ``PATH`` (the stub imports numpy, onnxruntime,
  torch and bodyshape from the first ``python3`` there), the project on ``PYTHONPATH`` and
  ``ANNY_CACHE_DIR`` set (``body_mesh`` builds the Anny body model in the stub);
- HTTP and gRPC bound to 127.0.0.1 only (2.51 can crash on huge request bodies: never
  expose it), metrics off.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

from bodyshape import paths
from bodyshape.errors import BodyShapeError


class TritonServerError(BodyShapeError):
    """The bundled server could not be found, started, or kept running."""


def _site_packages() -> Path:
    import pytriton

    return Path(pytriton.__file__).resolve().parent.parent


def find_tritonserver() -> tuple[Path, Path, Path]:
    """(tritonserver binary, its libs folder, the wheel's tritonserver folder)."""
    try:
        site = _site_packages()
    except ImportError as e:
        raise TritonServerError(
            "the nvidia-pytriton package is not installed (pip install nvidia-pytriton==0.7.0)"
        ) from e
    root = site / "pytriton" / "tritonserver"
    binary, libs = root / "bin" / "tritonserver", site / "nvidia_pytriton.libs"
    for p in (binary, libs, root / "backends" / "python"):
        if not p.exists():
            raise TritonServerError(f"nvidia-pytriton is installed but {p} is missing; reinstall it")
    return binary, libs, root


def prepare_backends(dest: Path) -> Path:
    """A backends folder: the wheel's Python backend + the stub for the running Python version."""
    _, _, root = find_tritonserver()
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / ver / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonServerError(f"the bundled Triton has no Python backend stub for Python {ver} ({stub})")
    py = dest / "python"
    if py.exists():
        shutil.rmtree(py)
    shutil.copytree(root / "backends" / "python", py, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(stub, py / "triton_python_backend_stub")
    return dest


def _prepend(value: str, rest: str | None) -> str:
    return os.pathsep.join(p for p in (value, rest or "") if p)


def server_environment() -> dict[str, str]:
    """This process's environment, plus what the server and its Python stubs need."""
    _, libs, _ = find_tritonserver()
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = _prepend(str(libs), env.get("LD_LIBRARY_PATH"))
    # The Python-backend stub links libpython<X.Y>.so: this interpreter's own, where it has one
    # outside the system folders (pyenv, a self-built Python); Debian/Ubuntu's is found anyway.
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir and Path(libdir, f"libpython{sys.version_info.major}.{sys.version_info.minor}.so.1.0").exists():
        env["LD_LIBRARY_PATH"] = _prepend(env["LD_LIBRARY_PATH"], libdir)
    env["PATH"] = _prepend(str(Path(sys.executable).parent), env.get("PATH"))
    if sys.prefix != sys.base_prefix:
        env["VIRTUAL_ENV"] = sys.prefix
    env["PYTHONPATH"] = _prepend(str(paths.REPO_DIR), env.get("PYTHONPATH"))
    # body_mesh builds Anny in the stub: the same cache as this process, not a cold build.
    env["ANNY_CACHE_DIR"] = str(paths.anny_cache_dir())
    return env


def server_command(
    model_repository: Path,
    backends: Path,
    http_port: int,
    grpc_port: int,
    model_config_name: str | None = None,
    extra_args: list[str] | None = None,
) -> list[str]:
    """The ``tritonserver`` command line: loopback only, metrics off, quiet log."""
    binary, _, _ = find_tritonserver()
    cmd = [
        str(binary),
        f"--model-repository={model_repository}",
        f"--backend-directory={backends}",
        "--http-address=127.0.0.1",
        f"--http-port={http_port}",
        "--grpc-address=127.0.0.1",
        f"--grpc-port={grpc_port}",
        "--allow-metrics=false",
        "--exit-timeout-secs=5",
        "--log-verbose=0",
    ]
    if model_config_name:
        cmd.append(f"--model-config-name={model_config_name}")
    return cmd + list(extra_args or [])
