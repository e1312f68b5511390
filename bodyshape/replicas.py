"""N bundled Triton replicas on loopback behind HAProxy: ``bodyshape serve --replicas N``.

    with ReplicaSet(2) as rs:                  # 2 supervised tritonservers + HAProxy, loopback
        TritonPredictor(rs.http_url)           # the balancer (gRPC: rs.grpc_url)
        rs.server_states()                     # {"r0": "UP", "r1": "UP"}: what HAProxy sees

Each replica is a :class:`~bodyshape.triton_supervisor.BundledTriton` on its own free loopback
ports, restarted by its watchdog when it dies. HAProxy (Debian's ``haproxy`` package) listens
on the balancer's HTTP and gRPC ports, checks each replica's ``/v2/health/ready``, sends each
request to the replica with the fewest in flight and retries a request on another replica when
its connection fails (``retry-on``, ``option redispatch``); a replica that comes back rejoins
after two good checks. The config is rendered from ``bodyshape/haproxy.cfg.tmpl``, the one
template that the deployment configs under ``deploy/`` are rendered from too
(``python -m bodyshape.replicas render``). HAProxy runs in its own process group, in the
foreground, and is restarted if it exits; :meth:`ReplicaSet.stop` ends it and every replica.
Why HAProxy, and the numbers: docs/scaling.md.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import ipaddress
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from string import Template

from bodyshape import process_group
from bodyshape.errors import BodyShapeError
from bodyshape.loopback import is_loopback
from bodyshape.triton_supervisor import DEFAULT_START_TIMEOUT_S, BundledTriton, free_port, logger

TEMPLATE = Path(__file__).with_name("haproxy.cfg.tmpl")
#: Largest HTTP request body the balancer lets through: a full batch of 64 pairs as binary
#: tensors is 1.6 MB; JSON-encoded tensors are about 4x larger. 2.51 crashed on 27 MB.
MAX_BODY_BYTES = 16 * 2**20
#: Keep N small on one machine: each replica loads Anny and PyTorch (~0.7 GB resident).
MAX_LOCAL_REPLICAS = 8
HTTP_BACKEND, GRPC_BACKEND = "triton_http", "triton_grpc"


class BalancerError(BodyShapeError):
    """HAProxy is missing, its config is refused, or it does not come up."""


@dataclass(frozen=True)
class Upstream:
    """One Triton replica as the balancer sees it."""

    name: str
    host: str
    http_port: int = 8000
    grpc_port: int = 8001


@dataclass(frozen=True)
class DnsUpstreams:
    """Replicas found by DNS (a Kubernetes headless Service: one A record per ready pod), up to
    ``slots`` of them; HAProxy re-resolves ``host`` and fills or empties its server slots."""

    host: str
    slots: int = 8
    http_port: int = 8000
    grpc_port: int = 8001


# ----------------------------------------------------------------------------- the config
def _by_name(upstreams: list[Upstream] | DnsUpstreams) -> bool:
    """True when HAProxy must resolve host names: at run time, through ``resolvers dns``, so
    that it starts before the replicas exist (compose, Kubernetes) and follows their moves."""
    if isinstance(upstreams, DnsUpstreams):
        return True
    try:
        for u in upstreams:
            ipaddress.ip_address(u.host)
        return False
    except ValueError:
        return True


def _server_lines(upstreams: list[Upstream] | DnsUpstreams, grpc: bool) -> str:
    def params(http_port: int) -> str:  # gRPC servers are health-checked on their HTTP port, as HTTP/1.1
        p = f" proto h2 check port {http_port} check-proto h1" if grpc else ""
        return p + (" resolvers dns init-addr none" if _by_name(upstreams) else "")

    if isinstance(upstreams, DnsUpstreams):
        u = upstreams
        return f"    server-template r 1-{u.slots} {u.host}:{u.grpc_port if grpc else u.http_port}{params(u.http_port)}"
    return "\n".join(
        f"    server {u.name} {u.host}:{u.grpc_port if grpc else u.http_port}{params(u.http_port)}"
        for u in upstreams
    )


def render_config(
    upstreams: list[Upstream] | DnsUpstreams,
    bind: str = "127.0.0.1",
    http_port: int = 8000,
    grpc_port: int = 8001,
    stats_socket: Path | None = None,
    timeout_s: float = 120.0,
    max_body_bytes: int = MAX_BODY_BYTES,
    maxconn: int = 1024,
) -> str:
    """The HAProxy config for these replicas, from :data:`TEMPLATE`."""
    if not isinstance(upstreams, DnsUpstreams) and not upstreams:
        raise BalancerError("the balancer needs at least one replica")
    extra = f"    stats socket {stats_socket} mode 600 level admin" if stats_socket else ""
    # The container's or pod's own resolver (Docker's 127.0.0.11, the cluster DNS).
    resolvers = "resolvers dns\n    parse-resolv-conf\n    hold valid 5s\n" if _by_name(upstreams) else ""
    text = Template(TEMPLATE.read_text()).substitute(
        maxconn=maxconn,
        global_extra=extra,
        resolvers=resolvers,
        timeout_s=round(timeout_s),
        bind=bind,
        http_port=http_port,
        grpc_port=grpc_port,
        max_body_bytes=max_body_bytes,
        http_servers=_server_lines(upstreams, grpc=False),
        grpc_servers=_server_lines(upstreams, grpc=True),
    )
    return "\n".join(line.rstrip() for line in text.splitlines() if line.strip() or not line) + "\n"


def find_haproxy() -> str:
    """The ``haproxy`` binary, or a BalancerError that says how to install it."""
    for candidate in (shutil.which("haproxy"), "/usr/sbin/haproxy"):
        if candidate and Path(candidate).is_file():
            return candidate
    raise BalancerError("haproxy is not installed: apt-get install -y haproxy (Debian/Ubuntu)")


def check_config(path: Path) -> None:
    """``haproxy -c``: BalancerError with HAProxy's own message if it refuses the config."""
    proc = subprocess.run([find_haproxy(), "-c", "-f", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise BalancerError(f"haproxy refused {path}:\n{(proc.stdout + proc.stderr).strip()}")


def stats(stats_socket: Path) -> list[dict[str, str]]:
    """HAProxy's ``show stat`` over its admin socket: one dict per frontend/backend/server."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2.0)
        s.connect(str(stats_socket))
        s.sendall(b"show stat\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    text = b"".join(chunks).decode().lstrip("# ")
    return list(csv.DictReader(io.StringIO(text)))


# ----------------------------------------------------------------------------- the running set
class ReplicaSet:
    """``replicas`` supervised bundled Triton servers behind HAProxy on ``bind``. Context manager.

    The replicas always bind 127.0.0.1; the balancer binds ``bind`` (loopback by default, a
    warning otherwise: anyone who reaches it can use the models). ``http_port``/``grpc_port``:
    the balancer's (None: free ports). ``log_dir``: where the replicas' and HAProxy's logs go
    (default: a temporary folder removed at stop).
    """

    def __init__(
        self,
        replicas: int = 2,
        http_port: int | None = None,
        grpc_port: int | None = None,
        bind: str = "127.0.0.1",
        model_repository: str | Path | None = None,
        model_config_name: str | None = None,
        start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
        log_dir: str | Path | None = None,
    ) -> None:
        if not 1 <= replicas <= MAX_LOCAL_REPLICAS:
            raise BalancerError(f"--replicas must be between 1 and {MAX_LOCAL_REPLICAS}, got {replicas}")
        find_haproxy()  # fail before loading any model
        self.bind, self.http_port, self.grpc_port = bind, http_port, grpc_port
        self._workdir = tempfile.TemporaryDirectory(prefix="bodyshape-replicas-")
        self.log_dir = Path(log_dir) if log_dir else Path(self._workdir.name)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = Path(self._workdir.name) / "haproxy.cfg"
        self.stats_socket = Path(self._workdir.name) / "haproxy.sock"
        self.replicas = [
            BundledTriton(
                model_repository,
                start_timeout_s=start_timeout_s,
                supervise=True,
                log_path=self.log_dir / f"triton-r{i}.log",
                model_config_name=model_config_name,
            )
            for i in range(replicas)
        ]
        self.balancer_restarts = 0
        self._proc: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._watchdog: threading.Thread | None = None

    # ------------------------------------------------------------------ addresses
    @property
    def http_url(self) -> str:
        return f"{self._client_host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self._client_host}:{self.grpc_port}"

    @property
    def _client_host(self) -> str:
        return "127.0.0.1" if self.bind in ("0.0.0.0", "::", "") else self.bind

    @property
    def pid(self) -> int | None:
        """HAProxy's process id."""
        return self._proc.pid if self._proc else None

    def upstreams(self) -> list[Upstream]:
        return [Upstream(f"r{i}", "127.0.0.1", r.http_port, r.grpc_port) for i, r in enumerate(self.replicas)]

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> ReplicaSet:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, say=lambda message: None) -> ReplicaSet:
        """Start every replica (one after the other: each loads Anny), then HAProxy; return once
        HAProxy sees every replica UP. On failure everything started so far is stopped."""
        if not is_loopback(self.bind):
            warnings.warn(f"the Triton balancer binds {self.bind}: anyone who can reach this machine "
                          "can use the models (the replicas themselves stay on 127.0.0.1)", stacklevel=2)  # fmt: skip
        try:
            for i, r in enumerate(self.replicas):
                t0 = time.monotonic()
                r.start()
                say(
                    f"replica r{i} ready in {time.monotonic() - t0:.0f} s: HTTP {r.http_url} gRPC {r.grpc_url}"
                )
            self.http_port = self.http_port or free_port()
            self.grpc_port = self.grpc_port or free_port()
            self.config_path.write_text(render_config(
                self.upstreams(), self.bind, self.http_port, self.grpc_port, self.stats_socket))  # fmt: skip
            check_config(self.config_path)
            self._spawn_balancer()
            self.wait_all_up()
        except BaseException:
            self.stop()
            raise
        self._watchdog = threading.Thread(target=self._watch_balancer, name="haproxy-watchdog", daemon=True)
        self._watchdog.start()
        return self

    def _spawn_balancer(self) -> None:
        long_lived = threading.current_thread() in (threading.main_thread(), self._watchdog)
        with open(self.log_dir / "haproxy.log", "ab") as log:
            self._proc = subprocess.Popen(
                [find_haproxy(), "-db", "-f", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=process_group.new_group_die_with_parent if long_lived else process_group.new_group,
                close_fds=True,
            )

    def _watch_balancer(self) -> None:
        """Wait on HAProxy; if it exits while the set runs, start it again (same config)."""
        while not self._stopping.is_set():
            proc = self._proc
            try:
                proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                continue
            if self._stopping.is_set():
                break
            logger.warning("haproxy (pid %s) exited with code %s; restarting it", proc.pid, proc.returncode)
            self.balancer_restarts += 1
            process_group.kill_group(proc, 2.0)
            self._stopping.wait(0.5)
            if not self._stopping.is_set():
                self._spawn_balancer()

    def server_states(self, backend: str = HTTP_BACKEND) -> dict[str, str]:
        """{replica: HAProxy's status ("UP", "DOWN", "UP 1/2", "MAINT", ...)} for ``backend``."""
        rows = stats(self.stats_socket)
        return {r["svname"]: r["status"] for r in rows
                if r["pxname"] == backend and r["svname"] not in ("FRONTEND", "BACKEND")}  # fmt: skip

    def wait_all_up(self, timeout_s: float = 30.0) -> None:
        """Return once HAProxy sees every replica UP in both backends, else BalancerError."""
        deadline = time.monotonic() + timeout_s
        states: dict = {}
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise BalancerError(f"haproxy exited with code {self._proc.returncode}: {self.log_tail()}")
            with contextlib.suppress(OSError):
                states = {b: self.server_states(b) for b in (HTTP_BACKEND, GRPC_BACKEND)}
                if all(s == "UP" for per in states.values() for s in per.values()):
                    return
            time.sleep(0.2)
        raise BalancerError(f"HAProxy did not see every replica UP within {timeout_s:.0f} s: {states}")

    def log_tail(self, n_lines: int = 20) -> str:
        path = self.log_dir / "haproxy.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-n_lines:]) if path.exists() else ""

    def stop(self) -> None:
        """Stop HAProxy and every replica (whole process groups); remove the temporary folder."""
        self._stopping.set()
        if self._watchdog is not None and self._watchdog is not threading.current_thread():
            self._watchdog.join(timeout=5)
        if self._proc is not None:
            process_group.kill_group(self._proc, 5.0)
            self._proc = None
        for r in self.replicas:
            with contextlib.suppress(Exception):
                r.stop()
        with contextlib.suppress(Exception):
            self._workdir.cleanup()


# ----------------------------------------------------------------------------- CLI: render a config
def _parse_upstream(i: int, text: str) -> Upstream:
    host, _, ports = text.partition(":")
    try:
        http, _, grpc = ports.partition(":")
        return Upstream(f"r{i}", host, int(http or 8000), int(grpc or 8001))
    except ValueError:
        raise BalancerError(f"--server must be HOST[:HTTP_PORT[:GRPC_PORT]], got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    """``python -m bodyshape.replicas render``: print a balancer config for other hosts (deploy/)."""
    p = argparse.ArgumentParser(prog="python -m bodyshape.replicas", description=main.__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("render", help="print the HAProxy config for the given replicas")
    r.add_argument("--server", action="append", default=[], help="HOST[:HTTP_PORT[:GRPC_PORT]], repeatable")
    r.add_argument(
        "--dns", default=None, help="a DNS name with one record per replica (Kubernetes headless Service)"
    )
    r.add_argument("--slots", type=int, default=8, help="with --dns: at most this many replicas")
    r.add_argument("--bind", default="127.0.0.1", help="the balancer's address (0.0.0.0 inside a container)")
    r.add_argument("--http-port", type=int, default=8000)
    r.add_argument("--grpc-port", type=int, default=8001)
    args = p.parse_args(argv)
    try:
        if bool(args.server) == bool(args.dns):
            raise BalancerError("give either --server (repeatable) or --dns")
        ups = DnsUpstreams(args.dns, args.slots) if args.dns else [
            _parse_upstream(i, s) for i, s in enumerate(args.server)]  # fmt: skip
        sys.stdout.write(render_config(ups, args.bind, args.http_port, args.grpc_port))
    except BalancerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
