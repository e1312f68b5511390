""":class:`BundledTriton`: start, watch and stop the bundled ``tritonserver`` on loopback.

    with BundledTriton() as server:          # starts, waits until every model is ready
        TritonPredictor(server.http_url)     # or server.grpc_url with protocol="grpc"

How the binary is run: :mod:`bodyshape.triton_bundle`. What this adds (docs/serving.md):
- its own process group (:mod:`bodyshape.process_group`): :meth:`BundledTriton.stop` ends
  the server and its Python stubs, nothing is left behind; on Linux the server also dies
  with the thread that started it;
- optional supervision: a watchdog thread restarts a server that died (``restarts`` counts);
  it waits on the process, so a crash is noticed at once, not at the next poll;
- a start that fails says which model failed to load and why (:mod:`bodyshape.triton_log`,
  and the repository index when the server is up), not only "not ready after N s".
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path

from bodyshape import process_group, triton_log
from bodyshape.paths import MODEL_REPOSITORY
from bodyshape.triton_bundle import TritonServerError, prepare_backends, server_command, server_environment

#: First start with a cold Anny cache builds the body model (~80 s on 2 cores).
DEFAULT_START_TIMEOUT_S = 300.0
#: After the log reports a failed model load, wait at most this long for the server to exit
#: by itself (it usually does, once the other models are loaded) before giving up on it:
#: some failures (a Python model without model.py) leave 2.51 hanging, never ready.
LOAD_FAILURE_GRACE_S = 20.0

logger = logging.getLogger("bodyshape.triton")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
            self._spawn_and_wait()
        if self.supervise and (self._watchdog is None or not self._watchdog.is_alive()):
            self._watchdog = threading.Thread(target=self._watch, name="triton-watchdog", daemon=True)
            self._watchdog.start()
        return self

    def command(self) -> list[str]:
        return server_command(
            self.model_repository,
            Path(self._workdir.name) / "backends",
            self.http_port,
            self.grpc_port,
            self.model_config_name,
            self.extra_args,
        )

    def environment(self) -> dict[str, str]:
        return server_environment()

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
                preexec_fn=process_group.new_group_die_with_parent if long_lived else process_group.new_group,
                close_fds=True,
            )
        finally:
            log.close()
        _LIVE.add(self)

    def _spawn_and_wait(self) -> None:
        """Start a server process and wait until it is ready; kill it if it is not."""
        self._spawn()
        try:
            self._wait_ready()
        except BaseException:
            self._kill()
            raise

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
        text = ""
        if self._log_path and self._log_path.exists():
            with open(self._log_path, "rb") as f:
                f.seek(self._log_offset)
                text = f.read().decode(errors="replace")
        return triton_log.load_failures(text, str(self.model_repository), self.model_states())

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
                self._spawn_and_wait()
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
            failures = self._restart_after_exit(proc, failures)

    def _restart_after_exit(self, proc: subprocess.Popen, failures: int) -> int:
        """One restart of a server that exited; returns the count of failed restarts in a row."""
        t0 = time.monotonic()
        logger.warning("tritonserver (pid %s) exited with code %s; restarting it", proc.pid, proc.returncode)
        try:
            self.ensure_running()
        except TritonServerError as e:
            if self._stopping.is_set():
                return failures
            pause = min(60.0, self.watchdog_interval_s * 2 ** (failures + 1))
            logger.error("restarting tritonserver failed; next try in %.0f s: %s", pause, e)
            self._stopping.wait(pause)
            return failures + 1
        logger.warning("tritonserver restarted (pid %s) in %.1f s", self.pid, time.monotonic() - t0)
        return 0

    def _kill(self, timeout_s: float = 15.0) -> None:
        """SIGTERM the server's process group (server + Python stubs), then SIGKILL what is left."""
        if self._proc is not None:
            process_group.kill_group(self._proc, timeout_s)

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            self._kill()
            self._proc = None
        if self._watchdog is not None and self._watchdog is not threading.current_thread():
            self._watchdog.join(timeout=5)
        self._watchdog = None
        if self._workdir is not None:
            if self._log_path and self._log_path.parent == Path(self._workdir.name):
                self._log_path = None  # the default log goes with the temporary folder
            self._workdir.cleanup()
            self._workdir = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if self.is_running():
                self.stop()
