"""Fault injection against the real stack: Triton killed mid-stream, broken model files, no rembg weights.

No mocks: a real bundled ``tritonserver`` (SIGKILLed while the page handler is serving
requests from several threads), model repositories with a missing or corrupt file, a
truncated weights file, and an empty or corrupt ``U2NET_HOME``. Every fault must end in a
message that names the broken thing and what to do, within a bounded time, and the page
must come back by itself once the fault is gone.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bodyshape.assets import U2NETP_FILE, MissingAssetError, have_u2netp
from bodyshape.errors import BodyShapeError
from bodyshape.paths import MODEL_REPOSITORY, REPO_DIR, WEIGHTS_DIR
from bodyshape.triton_server import BundledTriton, TritonServerError, free_port
from demo.make_assets import load_examples

needs_u2netp = pytest.mark.skipif(not have_u2netp(), reason="u2netp.onnx missing: run `bodyshape setup`")

#: No single page request may take longer than this, fault or not (2 shared CPU cores).
REQUEST_LIMIT_S = 90.0
#: Kill -> first successful page request, at most (server restart is ~10-20 s here).
RECOVERY_LIMIT_S = 150.0
#: A start on a broken repository must fail within this (not the 300 s start timeout).
BROKEN_START_LIMIT_S = 120.0


# ----------------------------------------------------------------------------- shared live server
@pytest.fixture(scope="module")
def server():
    """A supervised bundled server on the committed repository, in explicit model-control mode
    (all models loaded at start, like the default mode) so that a test can unload a model."""
    srv = BundledTriton(
        MODEL_REPOSITORY, supervise=True, extra_args=["--model-control-mode=explicit", "--load-model=*"]
    )
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def handlers(server):
    """Page handlers on the live server (HTTP, the page's default, and gRPC), built once."""
    import gradio  # noqa: F401 - the page has it imported; importing it in a failing request takes ~10 s

    from demo.backend import TritonBackend
    from demo.handler import DemoHandler

    return {
        "http": DemoHandler(TritonBackend(server.http_url)),
        "grpc": DemoHandler(TritonBackend(server.grpc_url, protocol="grpc")),
    }


@pytest.fixture(scope="module")
def cached_example(handlers, tmp_path_factory):
    """(front path, side path, height cm, session cache): the page's "press the button again"
    case, silhouettes from the session cache (no rembg), so that requests hit Triton often."""
    ex = load_examples()[0]
    d = tmp_path_factory.mktemp("upload")
    paths = [str(shutil.copy(ex[v], d / f"{v}{Path(ex[v]).suffix}")) for v in ("front", "side")]
    result = handlers["http"].run(*paths, ex["height_cm"], "cm", {})
    status, cache = result.status, result.cache
    assert status.startswith("**Done"), status
    for p in paths:
        os.unlink(p)  # like an upload deleted after its request: the session cache stays
    return paths[0], paths[1], ex["height_cm"], cache


def _server_ready(server: BundledTriton) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{server.http_url}/v2/health/ready", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _check_error_status(status: str, *words: str) -> None:
    assert status.startswith("**Error:**"), status
    assert "Traceback" not in status and "Something went wrong" not in status, status
    for w in words:
        assert w in status, (w, status)


# ----------------------------------------------------------------------------- 2. model not ready
@pytest.mark.slow
@pytest.mark.triton
@needs_u2netp
def test_unloaded_model_is_named_by_status_and_page(server, handlers, cached_example):
    """A live server whose body_mesh model is UNAVAILABLE: status() and the page name it; the
    page works again once it is loaded, with the same handler."""
    import tritonclient.http as thttp

    front, side, height, cache = cached_example
    handler = handlers["http"]
    admin = thttp.InferenceServerClient(server.http_url)
    admin.unload_model("body_mesh")  # explicit mode: unloads body_pipeline (its dependent) too
    try:
        status = handler.backend.status()
        print("status:", status)
        assert "body_mesh" in status and "NOT ready" in status, status
        page = handler.run(front, side, height, "cm", cache).status
        print("page:", page)
        _check_error_status(page, "body_mesh", "not ready")
        grpc_page = handlers["grpc"].run(front, side, height, "cm", cache).status
        _check_error_status(grpc_page, "body_mesh", "not ready")
    finally:
        admin.load_model("body_mesh")
        admin.load_model("body_pipeline")
    assert handler.backend.status().endswith(": ready")
    for h in handlers.values():
        status = h.run(front, side, height, "cm", cache).status
        assert status.startswith("**Done"), status


# ----------------------------------------------------------------------------- 1. Triton hung
@pytest.mark.slow
@pytest.mark.triton
@needs_u2netp
def test_hung_server_fails_requests_within_the_client_timeout(server, cached_example):
    """SIGSTOP tritonserver (a hung server: connections are accepted, nothing answers): the page
    gives up after about its client timeout with "not reachable", for a request on an open
    client and one that needs a new client; after SIGCONT the same handlers work again."""
    from demo.backend import TritonBackend
    from demo.handler import DemoHandler

    timeout_s = 5.0
    front, side, height, cache = cached_example
    handlers = {
        "http": DemoHandler(TritonBackend(server.http_url, timeout_s=timeout_s)),
        "grpc": DemoHandler(TritonBackend(server.grpc_url, protocol="grpc", timeout_s=timeout_s)),
    }
    for h in handlers.values():
        assert h.run(front, side, height, "cm", cache).status.startswith("**Done")
    os.kill(server.pid, signal.SIGSTOP)
    try:
        for proto, h in handlers.items():
            for attempt in ("open client", "new client"):
                t0 = time.monotonic()
                status = h.run(front, side, height, "cm", cache).status
                took = time.monotonic() - t0
                print(f"{proto}, {attempt}: {took:.1f} s: {status[:100]}")
                _check_error_status(status, "not reachable")
                assert took < 3 * timeout_s + 5, took
    finally:
        os.kill(server.pid, signal.SIGCONT)
    for proto, h in handlers.items():
        deadline = time.monotonic() + 60
        while not (status := h.run(front, side, height, "cm", cache).status).startswith("**Done"):
            assert time.monotonic() < deadline, (proto, status)
            time.sleep(0.5)
    assert server.is_running()


# ----------------------------------------------------------------------------- 1. Triton killed
@pytest.mark.slow
@pytest.mark.triton
@needs_u2netp
def test_page_survives_triton_being_killed_mid_stream(server, handlers, cached_example):
    """SIGKILL tritonserver while three threads send page requests (two HTTP, one gRPC; one
    of them through rembg): every request returns within REQUEST_LIMIT_S with Done or a clear
    "not reachable" error, nothing raises, the supervisor restarts the server and the same
    handlers succeed again. A fourth thread idles through the outage (stale connections)."""
    front, side, height, cache = cached_example
    ex = load_examples()[1]
    restarts0 = server.restarts
    records: list[tuple[str, float, float, str]] = []  # (thread, start, end, status)
    in_flight: dict[str, float] = {}
    stop = threading.Event()
    lock = threading.Lock()

    def request(name: str, handler, args) -> str:
        t0 = time.monotonic()
        with lock:
            in_flight[name] = t0
        try:
            status = handler.run(*args).status
        except BaseException as e:  # the page handler must never raise
            status = f"RAISED {type(e).__name__}: {e}"
        with lock:
            in_flight.pop(name, None)
            records.append((name, t0, time.monotonic(), status))
        return status

    def worker(name: str, handler, args) -> None:
        while not stop.is_set():
            request(name, handler, args)
            time.sleep(0.05)

    fast = (front, side, height, "cm", cache)
    full = (ex["front"], ex["side"], ex["height_cm"], "cm", {})
    threads = [
        threading.Thread(target=worker, args=("http-1", handlers["http"], fast), daemon=True),
        threading.Thread(target=worker, args=("grpc-1", handlers["grpc"], fast), daemon=True),
        threading.Thread(target=worker, args=("http-photos", handlers["http"], full), daemon=True),
    ]
    # The idle thread's client is created (and its connection pooled) before the kill.
    idle_go, idle_done = threading.Event(), threading.Event()
    idle_status: list[str] = []

    def idle() -> None:
        idle_status.append(request("http-idle", handlers["http"], fast))
        idle_go.wait()
        idle_status.append(request("http-idle", handlers["http"], fast))
        idle_done.set()

    idle_thread = threading.Thread(target=idle, daemon=True)
    idle_thread.start()
    for t in threads:
        t.start()
    # Kill once every thread is busy and the idle thread's first request is done.
    t_wait = time.monotonic() + REQUEST_LIMIT_S
    while not (idle_status and len(in_flight) >= 3) and time.monotonic() < t_wait:
        time.sleep(0.1)
    time.sleep(1.0)
    assert idle_status and idle_status[0].startswith("**Done"), idle_status
    t_kill = time.monotonic()
    os.kill(server.pid, signal.SIGKILL)

    first_ok = t_restart = t_ready = None
    deadline = t_kill + RECOVERY_LIMIT_S
    while time.monotonic() < deadline:
        if t_restart is None and server.restarts > restarts0:
            t_restart = time.monotonic()  # the supervisor noticed and is starting a new server
        if t_ready is None and t_restart is not None and _server_ready(server):
            t_ready = time.monotonic()
        with lock:
            stuck = {
                n: time.monotonic() - t0
                for n, t0 in in_flight.items()
                if time.monotonic() - t0 > REQUEST_LIMIT_S
            }
            oks = [r[2] for r in records if r[1] > t_kill and r[3].startswith("**Done")]
        assert not stuck, f"requests hanging: {stuck}"
        if oks and first_ok is None:
            first_ok = min(oks)
        # Once the page works again: let it run a few more seconds, then wake the idle thread.
        if first_ok is not None and time.monotonic() > first_ok + 5:
            break
        time.sleep(0.2)
    assert first_ok is not None, f"no successful request within {RECOVERY_LIMIT_S:.0f} s of the kill"
    idle_go.set()
    assert idle_done.wait(REQUEST_LIMIT_S), "the idle thread's request after the restart hangs"
    t_tail = time.monotonic()
    time.sleep(3.0)
    stop.set()
    for t in threads:
        t.join(REQUEST_LIMIT_S)
        assert not t.is_alive(), f"{t.name}: a request did not return within {REQUEST_LIMIT_S:.0f} s"

    outage = first_ok - t_kill
    errors = [r for r in records if not r[3].startswith("**Done")]
    durations = [r[2] - r[1] for r in records]
    print(
        f"\nkill -> supervisor restarting: {(t_restart or t_kill) - t_kill:.1f} s, -> server ready: "
        f"{(t_ready or first_ok) - t_kill:.1f} s, -> first successful page request: {outage:.1f} s; "
        f"supervisor restarts: {server.restarts - restarts0}"
    )
    print(f"{len(records)} requests, {len(errors)} errors, longest request {max(durations):.1f} s")
    for name, t0, t1, status in sorted(records, key=lambda r: r[1]):
        if t1 > t_kill - 1 and t0 < first_ok + 1:
            print(f"  {name:12s} {t0 - t_kill:+7.2f} .. {t1 - t_kill:+7.2f} s  {status[:110]}")

    assert server.restarts > restarts0 and server.is_running()
    assert max(durations) < REQUEST_LIMIT_S
    assert errors, "the kill went unnoticed: no request failed"
    for _, _, _, status in errors:
        _check_error_status(status, "not reachable")
    # Every thread works again with the handler it had: its requests after recovery are Done.
    for name in ("http-1", "grpc-1", "http-photos"):
        late = [r[3] for r in records if r[0] == name and r[1] > first_ok + 1]
        assert late and all(s.startswith("**Done") for s in late), (name, late)
    assert idle_status[0].startswith("**Done") and idle_status[1].startswith("**Done"), idle_status
    assert t_tail - t_kill < RECOVERY_LIMIT_S + REQUEST_LIMIT_S


# ----------------------------------------------------------------------------- 2. broken repository
def _broken_repository(tmp_path: Path, breakage: str) -> Path:
    repo = tmp_path / "model_repository"
    shutil.copytree(MODEL_REPOSITORY, repo, ignore=shutil.ignore_patterns("__pycache__"))
    if breakage == "onnx missing":
        (repo / "body_shape" / "1" / "model.onnx").unlink()
    elif breakage == "onnx garbage":
        (repo / "body_shape" / "1" / "model.onnx").write_bytes(np.random.default_rng(0).bytes(4096))
    elif breakage == "mesh config broken":
        cfg = repo / "body_mesh" / "config.pbtxt"
        cfg.write_text(cfg.read_text()[:200])  # cut in the middle of the input list
    elif breakage == "mesh model.py missing":
        (repo / "body_mesh" / "1" / "model.py").unlink()
    else:
        raise AssertionError(breakage)
    return repo


#: breakage -> (model that must be named, words of the reason, extra server arguments)
BREAKAGES = {
    "onnx missing": ("body_shape", ["model.onnx", "doesn't exist"], []),
    "onnx garbage": ("body_shape", ["model.onnx", "Protobuf parsing failed"], []),
    "mesh config broken": ("body_mesh", ["config.pbtxt"], []),
    # Triton 2.51 hangs on this one (the model never finishes loading, the server never exits).
    "mesh model.py missing": ("body_mesh", ["model.py", "not found"], []),
    # A server told to keep running after a failed load: up, but never ready.
    "onnx garbage, no exit": (
        "body_shape",
        ["model.onnx", "Protobuf parsing failed"],
        ["--exit-on-error=false"],
    ),
}


@pytest.mark.slow
@pytest.mark.triton
@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_broken_model_repository_names_the_model(tmp_path, breakage):
    model, words, extra = BREAKAGES[breakage]
    repo = _broken_repository(tmp_path, breakage.split(",")[0])
    srv = BundledTriton(repo, start_timeout_s=300, extra_args=extra)
    t0 = time.monotonic()
    with pytest.raises(TritonServerError) as e:
        srv.start()
    took = time.monotonic() - t0
    msg = str(e.value)
    head = msg.split("Last lines of")[0]
    print(f"\n{breakage}: failed after {took:.1f} s:\n{head}")
    assert f"model {model} failed to load" in head, head
    for w in words:
        assert w in head, (w, head)
    assert "bodyshape export" in head
    assert took < BROKEN_START_LIMIT_S, f"took {took:.0f} s: waited for the start timeout?"
    assert not srv.is_running()
    with pytest.raises(ProcessLookupError):  # nothing of its process group is left
        os.killpg(srv.pid, 0)
    srv.stop()


# ----------------------------------------------------------------------------- 2. in-process weights
@pytest.mark.parametrize("damage", ["missing", "truncated", "header only", "garbage"])
def test_broken_weights_file_is_a_clear_error(tmp_path, damage):
    from bodyshape.reconstruct import LocalPredictor

    src = WEIGHTS_DIR / "fused.safetensors"
    path = tmp_path / "fused.safetensors"
    data = src.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "header only":
        path.write_bytes(data[:100])
    elif damage == "garbage":
        path.write_bytes(np.random.default_rng(1).bytes(len(data)))
    with pytest.raises(BodyShapeError) as e:
        LocalPredictor(str(path))
    msg = str(e.value)
    print(f"{damage}: {msg}")
    assert str(path) in msg
    assert "git checkout" in msg and "bodyshape train" in msg, msg
    assert "Traceback" not in msg


def test_missing_shipped_weights_name_the_git_command():
    from bodyshape.reconstruct import LocalPredictor

    with pytest.raises(BodyShapeError, match="git checkout -- bodyshape/weights/nonexistent.safetensors"):
        LocalPredictor(str(WEIGHTS_DIR / "nonexistent.safetensors"))


def test_weights_with_a_damaged_tensor_are_refused(tmp_path):
    """A file whose header is intact but whose tensors are not the network's (a wrong or
    non-finite tensor) is refused with the file's name, not a load_state_dict stack trace."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from bodyshape.checkpoint import load_model
    from bodyshape.reconstruct import LocalPredictor

    src = WEIGHTS_DIR / "fused.safetensors"
    with safe_open(str(src), framework="pt") as f:
        meta = f.metadata()
    state = load_file(str(src))
    weight = next(k for k, v in state.items() if k.endswith(".weight"))
    missing = {k: v for k, v in state.items() if k != weight}
    save_file(missing, str(tmp_path / "missing.safetensors"), metadata=meta)
    nan = dict(state, **{weight: state[weight].clone().fill_(float("nan"))})
    save_file(nan, str(tmp_path / "nan.safetensors"), metadata=meta)
    for name, word in (("missing", weight), ("nan", "NaN")):
        path = tmp_path / f"{name}.safetensors"
        with pytest.raises(BodyShapeError) as e:
            LocalPredictor(str(path))
        print(f"{name}: {e.value}")
        assert str(path) in str(e.value) and word in str(e.value)
    assert load_model(src) is not None  # the shipped file itself is fine


# ----------------------------------------------------------------------------- 3. rembg weights
@pytest.fixture(params=["empty", "corrupt"])
def bad_u2net_home(request, tmp_path, monkeypatch):
    home = tmp_path / "u2net"
    home.mkdir()
    if request.param == "corrupt":
        (home / U2NETP_FILE).write_bytes(b"\x08\x07" + np.random.default_rng(2).bytes(100_000))
    monkeypatch.setenv("U2NET_HOME", str(home))
    return request.param, home


def test_segmenter_without_weights_names_setup(bad_u2net_home, monkeypatch):
    from bodyshape import photo

    kind, home = bad_u2net_home
    word = "missing" if kind == "empty" else "corrupt"
    with pytest.raises(MissingAssetError, match=word) as e:
        photo.Segmenter()
    assert "bodyshape setup" in str(e.value) and str(home) in str(e.value)
    # The photo path (no segmenter passed) builds the process-wide one: as in a fresh process.
    monkeypatch.setattr(photo, "_SEGMENTER", photo.Shared(photo.Segmenter, "rembg segmenter"))
    with pytest.raises(MissingAssetError, match="bodyshape setup"):
        photo.photo_to_silhouette(load_examples()[0]["front"], "front")


@pytest.mark.slow
def test_cli_without_rembg_weights_exits_2_before_starting_triton(bad_u2net_home, tmp_path):
    """`bodyshape demo` and `bodyshape reconstruct` as real processes: exit code 2 and the setup
    command on stderr, quickly (no Triton start, no page)."""
    kind, home = bad_u2net_home
    ex = load_examples()[0]
    env = dict(os.environ, U2NET_HOME=str(home), PYTHONPATH=str(REPO_DIR))
    commands = {
        "demo": ["demo", "--port", str(free_port())],
        "reconstruct": [
            "reconstruct",
            ex["front"],
            ex["side"],
            "--height",
            "170",
            "-o",
            str(tmp_path / "b.obj"),
        ],
    }
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "bodyshape.cli", *args],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for name, args in commands.items()
    }
    t0 = time.monotonic()
    try:
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=180)
            print(
                f"{name} ({kind}) rc={proc.returncode} after {time.monotonic() - t0:.1f} s\n stderr: {err.strip()[-600:]}"
            )
            assert proc.returncode == 2, (name, out, err)
            assert "bodyshape setup" in err and str(home) in err, err
            assert "Traceback" not in err
            assert "Triton" not in out + err.split("error:")[0], (out, err)  # failed before starting it
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
