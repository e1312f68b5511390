"""Load on the real stack (bundled Triton, real rembg, the Gradio page on loopback).

- the short CI version of ``bodyshape loadtest``: 4 users for 20 s, no failed request and
  every user served at least once;
- beyond its queue the page refuses at once with "busy, try again" (HTTP 503), while the
  requests it accepted are all served, however long they waited.

The full run (16 users, 2 minutes) and its numbers: docs/reliability.md.
"""

import dataclasses
import json
import threading
from pathlib import Path

import numpy as np
import pytest

from bodyshape.assets import have_u2netp
from demo.page import STATE_SESSIONS, serve_page

pytestmark = [
    pytest.mark.slow,
    pytest.mark.triton,
    pytest.mark.skipif(not have_u2netp(), reason="u2netp.onnx missing: run `bodyshape setup`"),
]


@pytest.fixture(scope="module")
def backend():
    """The page's backend on a supervised bundled Triton (``backend.server``)."""
    from bodyshape.triton_server import BundledTriton
    from demo.backend import TritonBackend

    with BundledTriton(supervise=True) as server:
        yield TritonBackend(server.http_url, server=server)


def test_load_short(backend, tmp_path):
    """4 users x 20 s through the default page settings: zero failures, everyone served."""
    from dataclasses import asdict

    from demo.loadtest import RssSampler, format_report, run_load

    with serve_page(backend) as page:
        rss = RssSampler(None, backend.server.pid)
        result = run_load(page.url, users=4, duration_s=20, hard_timeout_s=240, rss=rss, progress=False)
        out_root = page.demo.handler.out_root
        assert any(out_root.iterdir())  # the page wrote downloads ...
        sessions = list(page.demo.state_holder.session_data.values())
        assert page.demo.state_session_capacity == STATE_SESSIONS
    assert not out_root.exists()  # ... and deleted them when it closed
    # Memory kept per session stays small (Gradio keeps up to STATE_SESSIONS of them).
    assert len(sessions) >= 4
    for session in sessions:
        arrays_mb = _array_bytes(session.state_data) / 2**20
        outputs_mb = len(json.dumps(session.config_values, default=str)) / 2**20
        assert arrays_mb < 0.6 and outputs_mb < 1.0, (arrays_mb, outputs_mb)
    report = format_report(result)
    print(report)
    (tmp_path / "load.json").write_text(json.dumps(asdict(result)))
    assert result.failed == 0, report
    assert all(u["served"] >= 1 for u in result.per_user), report
    assert result.served >= 4 and result.latency_s["max"] > 0
    assert result.peak_rss_mb["triton"] > 50  # tritonserver + its two Python stubs were sampled
    assert "RESULT: OK" in report


def _array_bytes(obj) -> int:
    """Bytes of the numpy arrays inside nested dicts/lists/dataclasses."""
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, dict):
        return sum(_array_bytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(_array_bytes(v) for v in obj)
    if dataclasses.is_dataclass(obj):
        return sum(_array_bytes(getattr(obj, f.name)) for f in dataclasses.fields(obj))
    return 0


def _simultaneous_users(url: str, n: int, request) -> list:
    """``n`` sessions (one ``gradio_client.Client`` each) call ``request(client, i)`` at the same
    moment; returns each one's result (None if it had not returned after 180 s)."""
    from gradio_client import Client

    clients = [Client(url, verbose=False, download_files=False) for _ in range(n)]
    go = threading.Barrier(n)
    results: list = [None] * n

    def user(i: int) -> None:
        go.wait()
        results[i] = request(clients[i], i)

    threads = [threading.Thread(target=user, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    for c in clients:
        c.close()
    return results


def test_full_queue_says_busy_and_accepted_requests_are_served(backend, tmp_path):
    """1 worker, 1 waiting place, 5 users at once: some are told "busy", none of the others fail."""
    from gradio_client import handle_file
    from gradio_client.utils import QueueError

    from demo.loadtest import user_photos

    n = 5
    pairs = [user_photos(tmp_path, u)[0] for u in range(n)]

    def request(client, i: int) -> tuple[str, str]:
        try:
            out = client.predict(
                handle_file(pairs[i]["front"]), handle_file(pairs[i]["side"]), 172.0, "cm", api_name="/reconstruct"
            )
            return ("served", out[0])
        except QueueError as e:
            return ("busy", str(e))
        except Exception as e:  # anything else is a failure of the test
            return ("error", f"{type(e).__name__}: {e}")

    with serve_page(backend, concurrency=1, queue_size=1) as page:
        outcomes = _simultaneous_users(page.url, n, request)
    kinds = [o[0] for o in outcomes]
    print("outcomes:", kinds)
    assert "error" not in kinds and None not in kinds, outcomes
    served = [o[1] for o in outcomes if o[0] == "served"]
    busy = [o[1] for o in outcomes if o[0] == "busy"]
    assert len(served) >= 2 and busy, outcomes  # one running + one waiting at least; the rest refused
    assert all(s.startswith("**Done") for s in served), served
    assert all("try again" in b.lower() for b in busy), busy


def test_identical_uploads_from_several_sessions_are_all_served(backend, tmp_path):
    """Gradio stores uploads by content: the same photo from 3 sessions is one file, which the
    first request to finish deletes while the other two still wait in the queue (1 worker)."""
    from gradio_client import handle_file

    from demo.make_assets import load_examples

    ex = load_examples()[1]
    front, side = tmp_path / "front.jpg", tmp_path / "side.jpg"
    front.write_bytes(Path(ex["front"]).read_bytes() + b"\0shared")  # not the example's bytes,
    side.write_bytes(Path(ex["side"]).read_bytes() + b"\0shared")  # so the page deletes them
    def request(client, i: int) -> str:
        try:
            return client.predict(handle_file(front), handle_file(side), 165.0 + i, "cm", api_name="/reconstruct")[0]
        except Exception as e:
            return f"{type(e).__name__}: {e}"

    with serve_page(backend, concurrency=1) as page:
        statuses = _simultaneous_users(page.url, 3, request)
    assert all(str(s).startswith("**Done") for s in statuses), statuses
