"""The bundled Triton server: the ``tritonserver`` binary of the nvidia-pytriton wheel, on loopback.

    with BundledTriton() as server:          # starts, waits until every model is ready
        TritonPredictor(server.http_url)     # or server.grpc_url with protocol="grpc"

What it takes care of (see docs/serving.md and DESIGN.md's pitfalls):
- ``LD_LIBRARY_PATH`` -> the wheel's ``nvidia_pytriton.libs``;
- a backends folder with the Python backend and the stub built for *this* Python;
- the running environment's ``bin`` first on ``PATH`` (the stub imports numpy, onnxruntime,
  torch and bodyshape from the first ``python3`` there) and the project on ``PYTHONPATH``;
- HTTP and gRPC bound to 127.0.0.1 only (2.51 can crash on huge request bodies: never
  expose it), metrics off;
- its own process group: :meth:`stop` signals the group (server + Python stubs), so nothing
  is left behind; on Linux the server also dies with the thread that started it;
- optional supervision: a watchdog thread restarts a server that died (``restarts`` counts);
  it waits on the process, so a crash is noticed at once, not at the next poll;
- a start that fails says which model failed to load and why (from the server's log and,
  when the server is up, its repository index), not only "not ready after N s".

``bodyshape serve`` runs it in the foreground until Ctrl-C.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path

from bodyshape.errors import BodyShapeError
from bodyshape.paths import MODEL_REPOSITORY, REPO_DIR

#: First start with a cold Anny cache builds the body model (~80 s on 2 cores).
DEFAULT_START_TIMEOUT_S = 300.0
#: After the log reports a failed model load, wait at most this long for the server to exit
#: by itself (it usually does, once the other models are loaded) before giving up on it:
#: some failures (a Python model without model.py) leave 2.51 hanging, never ready.
LOAD_FAILURE_GRACE_S = 20.0

logger = logging.getLogger("bodyshape.triton")

#: Server log lines that report a model that failed to load: a ``reason`` group and, where the
#: line names it, a ``model`` group (else the model is the folder of a path in the reason).
#: Messages are logged as one quoted line with escaped newlines ("...\\n\\nAt:\\n  traceback").
_LOAD_FAILURES = (
    re.compile(r"failed to load '(?P<model>[^']+)' version \d+: (?P<reason>.*)"),
    re.compile(r"Poll failed for model directory '(?P<model>[^']+)': (?P<reason>.*)"),
    re.compile(r"Failed to (?:pre)?initialize Python stub: (?P<reason>.*)"),
    re.compile(
        r"ensemble '?(?P<model>[\w.-]+)'? (?P<reason>depends on '[^']+' which has no loaded version"
        r"|contains models that are not available[^\"]*)"
    ),
)


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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _new_group() -> None:  # runs in the child between fork and exec
    os.setsid()


def _new_group_die_with_parent() -> None:
    os.setsid()
    # PR_SET_PDEATHSIG: SIGTERM when the *thread* that forked exits (so only used from
    # long-lived threads: the main thread or the watchdog); covers a SIGKILLed parent.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


_LIVE: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.stop()


class BundledTriton:
    """Start/stop/supervise a local ``tritonserver`` on loopback. Context manager."""

    def __init__(
        self,
        model_repository: str | Path | None = None,
        http_port: int | None = None,
        grpc_port: int | None = None,
        start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
        supervise: bool = False,
        watchdog_interval_s: float = 2.0,
        log_path: str | Path | None = None,
        model_config_name: str | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.model_repository = Path(model_repository or MODEL_REPOSITORY).resolve()
        self.http_port = http_port
        self.grpc_port = grpc_port
        self.start_timeout_s = start_timeout_s
        self.supervise = supervise
        self.watchdog_interval_s = watchdog_interval_s
        self.model_config_name = model_config_name
        self.extra_args = list(extra_args or [])
        self.restarts = 0
        self._workdir: tempfile.TemporaryDirectory | None = None
        self._log_path = Path(log_path) if log_path else None
        self._proc: subprocess.Popen | None = None
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._log_offset = 0  # where the current process's lines start in the (appended) log

    # ------------------------------------------------------------------ addresses
    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> BundledTriton:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> BundledTriton:
        with self._lock:
            if self.is_running():
                return self
            if not (self.model_repository / "body_shape" / "config.pbtxt").is_file():
                raise TritonServerError(
                    f"{self.model_repository} is not a bodyshape model repository; run `bodyshape export`"
                )
            if self._workdir is None:
                self._workdir = tempfile.TemporaryDirectory(prefix="bodyshape-triton-")
                prepare_backends(Path(self._workdir.name) / "backends")
            if self._log_path is None:
                self._log_path = Path(self._workdir.name) / "tritonserver.log"
            self.http_port = self.http_port or free_port()
            self.grpc_port = self.grpc_port or free_port()
            self._stopping.clear()
            self._spawn()
            try:
                self._wait_ready()
            except BaseException:
                self._kill()
                raise
        if self.supervise and (self._watchdog is None or not self._watchdog.is_alive()):
            self._watchdog = threading.Thread(target=self._watch, name="triton-watchdog", daemon=True)
            self._watchdog.start()
        return self

    def command(self) -> list[str]:
        binary, _, _ = find_tritonserver()
        cmd = [
            str(binary),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={Path(self._workdir.name) / 'backends'}",
            "--http-address=127.0.0.1",
            f"--http-port={self.http_port}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={self.grpc_port}",
            "--allow-metrics=false",
            "--exit-timeout-secs=5",
            "--log-verbose=0",
        ]
        if self.model_config_name:
            cmd.append(f"--model-config-name={self.model_config_name}")
        return cmd + self.extra_args

    def environment(self) -> dict[str, str]:
        _, libs, _ = find_tritonserver()
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(libs), env.get("LD_LIBRARY_PATH", "")) if p)
        venv_bin = str(Path(sys.executable).parent)
        env["PATH"] = os.pathsep.join([venv_bin, env.get("PATH", "")])
        if sys.prefix != sys.base_prefix:
            env["VIRTUAL_ENV"] = sys.prefix
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_DIR), env.get("PYTHONPATH", "")) if p)
        return env  # ANNY_CACHE_DIR: bodyshape.paths already put the project default in os.environ

    def _spawn(self) -> None:
        long_lived = threading.current_thread() in (threading.main_thread(), self._watchdog)
        log = open(self._log_path, "ab")  # noqa: SIM115 - owned by the child process from here on
        self._log_offset = log.tell()
        try:
            self._proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.environment(),
                preexec_fn=_new_group_die_with_parent if long_lived else _new_group,
                close_fds=True,
            )
        finally:
            log.close()
        _LIVE.add(self)

    def log_tail(self, n_lines: int = 40) -> str:
        if not self._log_path or not self._log_path.exists():
            return "(no log)"
        lines = self._log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n_lines:])

    def _get(self, path: str, data: bytes | None = None) -> tuple[int, bytes]:
        req = urllib.request.Request(f"http://{self.http_url}{path}", data=data)
        try:
            with urllib.request.urlopen(req, timeout=2) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, b""
        except (urllib.error.URLError, OSError):
            return 0, b""

    def _ready(self) -> bool:
        return self._get("/v2/health/ready")[0] == 200

    def _live(self) -> bool:
        return self._get("/v2/health/live")[0] == 200

    def model_states(self) -> list[dict]:
        """The server's repository index: ``[{"name", "version", "state", "reason"?}, ...]``
        (``POST /v2/repository/index``); empty when the server does not answer."""
        status, body = self._get("/v2/repository/index", data=b"{}")
        if status != 200:
            return []
        with contextlib.suppress(ValueError):
            return list(json.loads(body))
        return []

    def load_failures(self) -> dict[str, str]:
        """{model: reason} for each model the current server process failed to load, from its
        log and, when it answers, its repository index (models it depends on come first)."""
        failures: dict[str, str] = {}
        text = ""
        if self._log_path and self._log_path.exists():
            with open(self._log_path, "rb") as f:
                f.seek(self._log_offset)
                text = f.read().decode(errors="replace")
        repo = str(self.model_repository).rstrip("/") + "/"
        for line in text.splitlines():
            for pattern in _LOAD_FAILURES:
                m = pattern.search(line)
                if not m:
                    continue
                reason = _first_line(m.group("reason"))
                model = m.groupdict().get("model")
                if model is None:  # the stub's message names a file of the model's folder
                    i = reason.find(repo)
                    model = reason[i + len(repo) :].split("/")[0] if i >= 0 else None
                if model and model not in failures:
                    failures[model] = reason
                break
        for entry in self.model_states():
            if entry.get("state") == "UNAVAILABLE" and entry.get("reason") and entry["name"] not in failures:
                failures[entry["name"]] = _first_line(entry["reason"])
        # Ensembles that only failed because a model they use did: after that model.
        return dict(sorted(failures.items(), key=lambda kv: kv[1].startswith(("depends on", "contains"))))

    def _start_error(self, what: str) -> TritonServerError:
        failures = self.load_failures()
        if failures:
            models = "; ".join(f"model {m} failed to load: {r}" for m, r in failures.items())
            head = (
                f"tritonserver {what}: {models} (repository {self.model_repository}; restore its files, "
                "e.g. `git checkout -- model_repository`, or rebuild it with `bodyshape export`)"
            )
            tail = self.log_tail(12)
        else:
            head = f"tritonserver {what} (repository {self.model_repository})"
            tail = self.log_tail()
        return TritonServerError(f"{head}. Last lines of {self._log_path}:\n{tail}")

    def _wait_ready(self) -> None:
        t0 = time.monotonic()
        deadline = t0 + self.start_timeout_s
        failed_at = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise self._start_error(f"exited with code {self._proc.returncode} while starting")
            if self._ready():
                return
            if failed_at is None and self.load_failures():
                failed_at = time.monotonic()
            if failed_at is not None and (
                time.monotonic() - failed_at > LOAD_FAILURE_GRACE_S or self._live()
            ):  # a model failed and the server neither exits nor gets ready (or is up without it)
                raise self._start_error(f"could not load all models ({time.monotonic() - t0:.0f} s)")
            time.sleep(0.25)
        raise self._start_error(f"was not ready after {self.start_timeout_s:.0f} s")

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def ensure_running(self) -> BundledTriton:
        """Restart the server if it died (same ports); returns once it is ready."""
        with self._lock:
            if self._stopping.is_set() or self._proc is None:
                raise TritonServerError("the bundled Triton server was stopped")
            if not self.is_running():
                self.restarts += 1
                self._kill()  # reap what is left of the old process group
                self._spawn()
                try:
                    self._wait_ready()
                except BaseException:
                    self._kill()
                    raise
        return self

    def _watch(self) -> None:
        """Wait on the server process; when it dies (not stopped by us), start it again.

        Failed restarts (a model file broken meanwhile) are retried with a growing pause, up
        to a minute, so that a server that cannot start does not keep the CPU busy."""
        failures = 0
        while not self._stopping.is_set():
            proc = self._proc
            if proc is None:
                self._stopping.wait(self.watchdog_interval_s)
                continue
            try:
                proc.wait(timeout=self.watchdog_interval_s)
            except subprocess.TimeoutExpired:
                continue
            if self._stopping.is_set():
                break
            t0 = time.monotonic()
            logger.warning(
                "tritonserver (pid %s) exited with code %s; restarting it", proc.pid, proc.returncode
            )
            try:
                self.ensure_running()
                failures = 0
                logger.warning("tritonserver restarted (pid %s) in %.1f s", self.pid, time.monotonic() - t0)
            except TritonServerError as e:
                if self._stopping.is_set():
                    break
                failures += 1
                pause = min(60.0, self.watchdog_interval_s * 2**failures)
                logger.error("restarting tritonserver failed; next try in %.0f s: %s", pause, e)
                self._stopping.wait(pause)

    def _kill(self, timeout_s: float = 15.0) -> None:
        """SIGTERM the server's process group (server + Python stubs), then SIGKILL what is left."""
        proc = self._proc
        if proc is None:
            return
        pgid = proc.pid  # setsid() made the server a group leader
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass
        # Stubs may outlive the server by a moment: give them a second, then force.
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and _group_alive(pgid):
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        # Killed stubs stay zombies until init reaps them: return once the group is gone.
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and _group_alive(pgid):
            time.sleep(0.05)

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            self._kill()
            self._proc = None
        if self._watchdog is not None and self._watchdog is not threading.current_thread():
            self._watchdog.join(timeout=5)
        self._watchdog = None
        if self._workdir is not None:
            keep_log = self._log_path and self._log_path.parent == Path(self._workdir.name)
            if keep_log:
                self._log_path = None
            self._workdir.cleanup()
            self._workdir = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if self.is_running():
                self.stop()


def _first_line(reason: str, limit: int = 400) -> str:
    """A logged error message without its escaped traceback and quoting, shortened."""
    reason = reason.split("\\n")[0].split("\n")[0].strip().rstrip('"').rstrip(";").strip()
    return reason if len(reason) <= limit else reason[: limit - 3] + "..."


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


# ---------------------------------------------------------------------- CLI stage `serve`
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-repository", type=Path, default=MODEL_REPOSITORY)
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_START_TIMEOUT_S, help="seconds to wait for readiness"
    )
    parser.add_argument("--log", type=Path, default=None, help="server log file (default: a temporary file)")
    parser.add_argument(
        "--model-config-name", default=None, help="e.g. tensorrt_plan on a GPU host with a built model.plan"
    )


def run(args: argparse.Namespace) -> int:
    server = BundledTriton(
        args.model_repository,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        start_timeout_s=args.timeout,
        supervise=True,
        log_path=args.log,
        model_config_name=args.model_config_name,
    )
    print(f"starting tritonserver on 127.0.0.1 (repository {server.model_repository}) ...", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with server:
        print(
            f"ready: HTTP {server.http_url}  gRPC {server.grpc_url}  (pid {server.pid}, log {server.log_path})\n"
            "models: body_shape, body_mesh, body_pipeline. Ctrl-C to stop.",
            flush=True,
        )
        while not stop.wait(1.0):
            pass
        print("stopping ...", flush=True)
    print("stopped.")
    return 0
