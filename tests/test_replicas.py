"""Triton replicas behind a real HAProxy on loopback (``bodyshape serve --replicas N``).

No mocks: Debian's ``haproxy``, real bundled ``tritonserver`` replicas, the real page with
real rembg and the load test's simulated users. Checked:
- the balancer config (one template) is accepted by ``haproxy -c``, and the configs committed
  under ``deploy/`` are what the template renders today;
- 2 replicas, 4 users on the page, one replica SIGKILLed while it answers: 0 failed requests,
  the supervisor restarts it, HAProxy takes it back and it serves again;
- a balancer with no replica to give a request to answers 503 and the client's bounded retry
  rides it out (and gives up cleanly with retries off);
- oversized request bodies are refused by the balancer (tritonserver 2.51 can crash on them);
- the balancer and the replicas listen on 127.0.0.1 only, and nothing is left after stop.

Skipped, with the reason, where the ``haproxy`` binary is missing (apt-get install -y haproxy).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from bodyshape.assets import have_u2netp
from bodyshape.errors import BodyShapeError
from bodyshape.paths import REPO_DIR
from bodyshape.replicas import GRPC_BACKEND, HTTP_BACKEND, BalancerError, find_haproxy, stats


def _have_haproxy() -> bool:
    try:
        find_haproxy()
        return True
    except BalancerError:
        return False


needs_haproxy = pytest.mark.skipif(
    not _have_haproxy(), reason="haproxy not installed: apt-get install -y haproxy (.ci/run does)"
)
pytestmark = [needs_haproxy]

#: Committed configs under deploy/ and the arguments that render them (kept in sync by the test).
DEPLOY_CONFIGS = {
    "deploy/compose/haproxy.cfg": ["--server", "triton-1", "--server", "triton-2", "--server", "triton-3",
                                   "--bind", "0.0.0.0"],
    "deploy/kubernetes/haproxy.cfg": ["--dns", "triton.bodyshape.svc.cluster.local", "--slots", "16",
                                      "--bind", "0.0.0.0"],
}  # fmt: skip


def _render(args: list[str]) -> str:
    proc = subprocess.run([sys.executable, "-m", "bodyshape.replicas", "render", *args],
                          capture_output=True, text=True, cwd=REPO_DIR)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# ----------------------------------------------------------------------------- the config
@pytest.mark.parametrize("path", sorted(DEPLOY_CONFIGS))
def test_deploy_configs_are_rendered_from_the_template_and_valid(path, tmp_path):
    """deploy/'s HAProxy configs = today's render of bodyshape/haproxy.cfg.tmpl, and valid."""
    rendered = _render(DEPLOY_CONFIGS[path])
    committed = (REPO_DIR / path).read_text()
    assert committed == rendered, (
        f"{path} is stale: python -m bodyshape.replicas render {' '.join(DEPLOY_CONFIGS[path])} > {path}"
    )
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(rendered)
    proc = subprocess.run([find_haproxy(), "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_render_refuses_bad_arguments():
    proc = subprocess.run([sys.executable, "-m", "bodyshape.replicas", "render", "--server", "h:notaport"],
                          capture_output=True, text=True, cwd=REPO_DIR)  # fmt: skip
    assert proc.returncode == 2 and "HOST[:HTTP_PORT[:GRPC_PORT]]" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------- the live set
@pytest.fixture(scope="module")
def replica_set():
    from bodyshape.replicas import ReplicaSet

    rs = ReplicaSet(2)
    t0 = time.monotonic()
    rs.start(say=print)
    print(f"2 replicas + HAProxy up in {time.monotonic() - t0:.1f} s")
    yield rs
    groups = [r.pid for r in rs.replicas] + [rs.pid]
    rs.stop()
    from bodyshape.process_group import group_alive

    left = [g for g in groups if g and group_alive(g)]
    assert not left, f"process groups left after stop: {left}"


def _inference_count(replica, model: str = "body_shape") -> int:
    """How many inferences of ``model`` this replica's current process has run (Triton's stats)."""
    url = f"http://{replica.http_url}/v2/models/{model}/stats"
    with urllib.request.urlopen(url, timeout=5) as r:
        return int(json.loads(r.read())["model_stats"][0]["inference_count"])


def _silhouettes() -> tuple[np.ndarray, np.ndarray]:
    f = np.zeros((128, 96), np.uint8)
    f[10:120, 32:64] = 255
    return f, f.copy()


def _retries(rs) -> dict[str, int]:
    """HAProxy's retry (wretr) and redispatch (wredis) counts of the two backends."""
    out = {}
    for row in stats(rs.stats_socket):
        if row["svname"] == "BACKEND" and row["pxname"] in (HTTP_BACKEND, GRPC_BACKEND):
            out[row["pxname"]] = {"retries": int(row["wretr"] or 0), "redispatches": int(row["wredis"] or 0)}
    return out


@pytest.mark.slow
@pytest.mark.triton
@pytest.mark.skipif(not have_u2netp(), reason="u2netp.onnx missing: run `bodyshape setup`")
def test_replica_killed_under_load_fails_no_request_and_rejoins(replica_set):
    """4 users on the page (HTTP through HAProxy), replica r0 SIGKILLed while it answers a
    request: no request fails; r0 is restarted by its supervisor, HAProxy marks it UP again,
    and requests through the balancer reach it again."""
    from demo.backend import TritonBackend
    from demo.loadtest import format_report, run_load
    from demo.page import serve_page

    rs = replica_set
    victim = rs.replicas[0]
    killed: dict = {}

    def kill_when_busy() -> None:
        """Once both replicas have served page requests, SIGKILL r0 while HAProxy has one in flight."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            busy = {r["svname"]: int(r["scur"] or 0) for r in stats(rs.stats_socket)
                    if r["pxname"] == HTTP_BACKEND}  # fmt: skip
            if all(_inference_count(r) > 0 for r in rs.replicas) and busy.get("r0", 0) > 0:
                break
            time.sleep(0.02)
        killed["in_flight"] = busy.get("r0", 0)
        killed["pid"], killed["t"] = victim.pid, time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)
        while victim.restarts == 0 or not victim._ready():
            time.sleep(0.1)
        killed["ready_s"] = time.monotonic() - killed["t"]
        while rs.server_states().get("r0") != "UP":
            time.sleep(0.1)
        killed["up_s"] = time.monotonic() - killed["t"]

    killer = threading.Thread(target=kill_when_busy, daemon=True)
    with serve_page(TritonBackend(rs.http_url)) as page:
        killer.start()
        result = run_load(page.url, users=4, duration_s=45, hard_timeout_s=300, progress=False)
    killer.join(timeout=120)
    report = format_report(result)
    print(report)
    print(f"kill: {killed}; HAProxy retries: {_retries(rs)}")
    assert "pid" in killed, "r0 was never killed"
    assert result.failed == 0, report
    assert result.served >= 4 and all(u["served"] >= 1 for u in result.per_user), report
    assert victim.restarts >= 1 and victim.pid != killed["pid"]
    assert "up_s" in killed, f"r0 did not rejoin: {rs.server_states()}"
    # The restarted r0 serves again: requests through the balancer reach it.
    from bodyshape.triton_client import TritonPredictor

    front, side = _silhouettes()
    before = _inference_count(victim)
    with TritonPredictor(rs.http_url) as p:
        for _ in range(8):
            p.predict_shape(front, side, 1.7)
    assert _inference_count(victim) > before, "the restarted replica got no request from the balancer"


@pytest.mark.slow
@pytest.mark.triton
def test_grpc_through_the_balancer_and_client_retry_over_a_503(replica_set):
    """gRPC works through HAProxy; with both replicas out of rotation HAProxy answers 503: a
    client with retries succeeds once a replica is back within its retries, and a client
    with retries=0 gets a clear TritonUnavailableError at once."""
    from bodyshape.triton_client import TritonPredictor, TritonUnavailableError

    rs = replica_set
    front, side = _silhouettes()
    with TritonPredictor(rs.grpc_url, protocol="grpc") as p:
        shape, verts = p.reconstruct(front, side, 1.7)
    assert shape.shape == (1, 20) and verts.shape[1:] == (13718, 3)

    def admin(cmd: str) -> None:
        import socket

        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(rs.stats_socket))
            s.sendall(cmd.encode() + b"\n")
            s.recv(4096)

    http, no_retry = TritonPredictor(rs.http_url), TritonPredictor(rs.http_url, retries=0)
    for r in ("r0", "r1"):
        admin(f"disable server {HTTP_BACKEND}/{r}")
    try:
        t0 = time.monotonic()
        with pytest.raises(TritonUnavailableError, match="not reachable"):
            no_retry.predict_shape(front, side, 1.7)
        assert time.monotonic() - t0 < 2.0
        threading.Timer(0.4, admin, args=(f"enable server {HTTP_BACKEND}/r1",)).start()
        t0 = time.monotonic()
        out = http.predict_shape(front, side, 1.7)  # 503, pause 0.25 s, 503?, pause 0.5 s, served
        took = time.monotonic() - t0
    finally:
        for r in ("r0", "r1"):
            admin(f"enable server {HTTP_BACKEND}/{r}")
    print(f"served after the 503s in {took:.2f} s")
    assert out.shape == (1, 20) and 0.25 < took < 5.0


@pytest.mark.triton
def test_balancer_refuses_oversized_bodies(replica_set):
    """A request announcing a body over the limit, or a chunked one, gets 413 from HAProxy
    before any byte of the body reaches a replica (2.51 can crash on huge bodies)."""
    from bodyshape.replicas import MAX_BODY_BYTES

    url = f"http://{replica_set.http_url}/v2/models/body_shape/infer"
    for headers in ({"Content-Length": str(MAX_BODY_BYTES + 1)}, {"Transfer-Encoding": "chunked"}):
        import http.client

        host, port = replica_set.http_url.split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.putrequest("POST", "/v2/models/body_shape/infer")
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        status = conn.getresponse().status
        conn.close()
        assert status == 413, (headers, status, url)
    assert all(r.is_running() for r in replica_set.replicas)


@pytest.mark.triton
def test_balancer_and_replicas_listen_on_loopback_only(replica_set):
    from test_security import _listening, _socket_inodes

    from demo.loadtest import _group_pids

    rs = replica_set
    listening = _listening()
    pids = [rs.pid] + [p for r in rs.replicas for p in _group_pids(r.pid)]
    sockets = [listening[i] for pid in pids for i in _socket_inodes(pid) if i in listening]
    ports = {port for _, port in sockets}
    assert {rs.http_port, rs.grpc_port} <= ports, sockets
    assert all({r.http_port, r.grpc_port} <= ports for r in rs.replicas), sockets
    assert all(addr == "127.0.0.1" for addr, _ in sockets), sockets


def test_bad_replica_count_is_a_clear_error():
    from bodyshape.replicas import ReplicaSet

    with pytest.raises(BodyShapeError, match="between 1 and"):
        ReplicaSet(0)
