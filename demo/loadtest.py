"""``bodyshape loadtest``: N simulated users press *Reconstruct* on the page at the same time.

    bodyshape loadtest                                  # starts Triton + the page here, on loopback
    bodyshape loadtest --users 16 --duration 120 --json docs/loadtest.json
    bodyshape loadtest --url http://127.0.0.1:7860 --auth user:pass   # a page that is already running

Each user is a thread with its own ``gradio_client.Client`` (its own session) that uploads a
front/side example pair (rotating through the page's examples; the height varies a little),
waits for the answer and starts again, until ``--duration`` has passed (the request in flight
is finished, not dropped). ``--max-requests`` bounds each user's count and ``--hard-timeout``
the whole run: a request still unanswered then counts as failed.

Each user uploads its *own* copies of the example photos (a few user-specific bytes appended
after the JPEG data): the examples themselves are never deleted by the page, any other upload
is deleted after its request, so this exercises the real upload -> delete path.

A request fails when the client raises (connection, queue full, timeout, or the page refusing
the request: ``AppError`` with the page's message) or when the page's status does not start
with "**Done". Exit status 1 if any request failed or none was served.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bodyshape.errors import BodyShapeError
from demo.security import parse_auth

#: The page's own timing line: "**Done in 1.23 s** on the server: ...".
DONE_RE = re.compile(r"^\*\*Done in ([0-9.]+) s")
PROGRESS_EVERY_S = 10.0


@dataclass
class UserStats:
    user: int
    served: int = 0
    failed: int = 0
    latencies_s: list[float] = field(default_factory=list)
    server_s: list[float] = field(default_factory=list)  # the page's own "Done in" time
    errors: list[str] = field(default_factory=list)


@dataclass
class LoadTestResult:
    url: str
    users: int
    duration_s: float
    wall_s: float
    served: int
    failed: int
    throughput_rps: float
    latency_s: dict[str, float]
    server_time_s: dict[str, float]
    per_user: list[dict]
    errors: list[str]
    peak_rss_mb: dict[str, float]
    loadavg_before: str
    loadavg_after: str
    settings: dict
    machine: dict

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.served > 0


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    a = np.asarray(values, np.float64)
    return {
        "p50": float(np.percentile(a, 50)),
        "p95": float(np.percentile(a, 95)),
        "p99": float(np.percentile(a, 99)),
        "max": float(a.max()),
        "mean": float(a.mean()),
    }


def _loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "n/a"


# ----------------------------------------------------------------------------- memory (Linux /proc)
def _proc_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _group_pids(pgid: int) -> list[int]:
    """Processes in process group ``pgid`` (tritonserver and its Python backend stubs)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:  # fields after "(comm)": state, ppid, pgrp, ...
            pids.append(int(d.name))
    return pids


class RssSampler:
    """Peak resident memory of the page process and of the Triton process group, sampled.

    Sampled (sum of VmRSS per group) rather than summed VmHWM: the peaks of separate processes
    need not coincide. ``page_pid`` is this process when the stack runs in-process, so its
    number includes the simulated users (a few MB of client threads).
    """

    def __init__(self, page_pid: int | None, triton_pgid: int | None) -> None:
        self.page_pid, self.triton_pgid = page_pid, triton_pgid
        self.peak_page_kb = self.peak_triton_kb = 0

    def sample(self) -> None:
        if self.page_pid:
            self.peak_page_kb = max(self.peak_page_kb, _proc_kb(self.page_pid, "VmRSS"))
        if self.triton_pgid:
            kb = sum(_proc_kb(p, "VmRSS") for p in _group_pids(self.triton_pgid))
            self.peak_triton_kb = max(self.peak_triton_kb, kb)

    def result(self) -> dict[str, float]:
        out = {}
        if self.page_pid:
            out["page"] = round(max(self.peak_page_kb, _proc_kb(self.page_pid, "VmHWM")) / 1024, 1)
        if self.triton_pgid:
            out["triton"] = round(self.peak_triton_kb / 1024, 1)
        return out


# ----------------------------------------------------------------------------- the stack under test
@dataclass
class Stack:
    url: str  # the page, http://127.0.0.1:PORT
    port: int
    triton: Any  # BundledTriton (pid, http_url, ports)
    demo: Any  # the launched gradio Blocks (demo.handler: the DemoHandler)


@contextlib.contextmanager
def local_stack(
    concurrency: int | None = None,
    queue_size: int | None = None,
    auth: tuple[str, str] | None = None,
    max_upload_mb: float | None = None,
) -> Iterator[Stack]:
    """The whole real stack on loopback: bundled Triton (supervised) + the page on a free port,
    started the way ``bodyshape demo`` starts them (:func:`demo.backend.open_backend`).

    Stops both afterwards (Triton's whole process group: no orphan ``tritonserver``).
    """
    from demo.backend import open_backend
    from demo.page import serve_page

    with (
        open_backend(None, supervise=True, say=lambda m: None) as backend,
        serve_page(backend, concurrency, queue_size, auth, max_upload_mb) as page,
    ):
        yield Stack(page.url, page.port, backend.server, page.demo)


# ----------------------------------------------------------------------------- simulated users
def user_photos(out_dir: Path, user: int, run_id: str | None = None) -> list[dict]:
    """This user's own copies of the example pairs (distinct bytes, same pixels) + heights.

    The bytes are unique to the user *and* the run: Gradio names uploads by content, and a
    page in another process that once received the same bytes deletes them when it stops.
    """
    from demo.make_assets import load_examples

    run_id = run_id or uuid.uuid4().hex
    pairs = []
    for ex in load_examples():
        pair = {"height_cm": float(ex["height_cm"]), "name": ex["name"]}
        for view in ("front", "side"):
            p = out_dir / f"user{user:02d}_{ex['name']}_{view}.jpg"
            p.write_bytes(Path(ex[view]).read_bytes() + f"\0bodyshape-loadtest-{run_id}-{user}".encode())
            pair[view] = str(p)
        pairs.append(pair)
    return pairs


@dataclass
class _Run:
    """What the user threads share: the page, the clock and a count of requests in flight."""

    url: str
    auth: tuple[str, str] | None
    max_requests: int
    users: int
    start: threading.Event = field(default_factory=threading.Event)
    deadline: float = 0.0  # monotonic: no new request after this
    hard_deadline: float = 0.0  # monotonic: a request still unanswered then fails
    in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    ready: threading.Barrier = field(init=False)

    def __post_init__(self) -> None:
        self.ready = threading.Barrier(self.users + 1)  # every user, and the one that starts them

    def count_in_flight(self, delta: int) -> None:
        with self.lock:
            self.in_flight += delta


def _one_request(client, pair: dict, height: float, run: _Run, stats: UserStats) -> None:
    """One press of the button; a served request adds its latency, a refused one its reason.

    The page refuses a request with ``gr.Error`` (gradio_client raises ``AppError`` with the
    page's message); any exception or a status that is not "**Done" counts as failed.
    """
    from gradio_client import handle_file

    run.count_in_flight(+1)
    t0 = time.monotonic()
    try:
        job = client.submit(handle_file(pair["front"]), handle_file(pair["side"]), height, "cm",
                            api_name="/reconstruct")  # fmt: skip
        remaining = run.hard_deadline - time.monotonic()
        try:
            out = job.result(timeout=max(remaining, 0.1))
        except TimeoutError:
            job.cancel()
            raise TimeoutError(f"no answer before the hard timeout ({remaining:.0f} s left)") from None
        status = str(out[0] if isinstance(out, list | tuple) else out)
        m = DONE_RE.match(status)
        if not m:
            raise ValueError(f"status: {status[:200]}")
        stats.served += 1
        stats.latencies_s.append(time.monotonic() - t0)
        stats.server_s.append(float(m.group(1)))
    except Exception as e:
        stats.failed += 1
        stats.errors.append(f"{type(e).__name__}: {e}"[:300])
    finally:
        run.count_in_flight(-1)


def _user_loop(user: int, run: _Run, pairs: list[dict], stats: UserStats) -> None:
    """One simulated user: its own client (session), requests until the deadline."""
    from gradio_client import Client

    rng = np.random.default_rng(1000 + user)
    client = None
    try:
        try:
            client = Client(run.url, auth=run.auth, verbose=False, download_files=False)
        except Exception as e:  # the page is not reachable or refuses the login
            stats.failed += 1
            stats.errors.append(f"connect: {type(e).__name__}: {e}"[:300])
        with contextlib.suppress(threading.BrokenBarrierError):
            run.ready.wait()
        run.start.wait()
        i = 0
        while client is not None and time.monotonic() < run.deadline and i < run.max_requests:
            pair = pairs[(user + i) % len(pairs)]
            i += 1
            _one_request(client, pair, round(pair["height_cm"] + rng.uniform(-3.0, 3.0), 1), run, stats)
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()


def _start_users(run: _Run, stats: list[UserStats], photo_dir: Path) -> list[threading.Thread]:
    run_id = uuid.uuid4().hex
    threads = []
    for u, s in enumerate(stats):
        t = threading.Thread(target=_user_loop, args=(u, run, user_photos(photo_dir, u, run_id), s),
                             name=f"loadtest-user-{u}", daemon=True)  # fmt: skip
        t.start()
        threads.append(t)
    with contextlib.suppress(threading.BrokenBarrierError):
        run.ready.wait(timeout=120)  # every client connected (or failed to)
    return threads


def _watch(run: _Run, threads: list[threading.Thread], stats: list[UserStats], t0: float,
           progress: bool, rss: RssSampler | None) -> None:  # fmt: skip
    """Wait for the users (or the hard timeout), sampling memory and printing progress."""
    next_print = t0 + PROGRESS_EVERY_S
    while any(t.is_alive() for t in threads) and time.monotonic() < run.hard_deadline + 5:
        time.sleep(0.5)
        if rss is not None:
            rss.sample()
        if progress and time.monotonic() >= next_print:
            next_print += PROGRESS_EVERY_S
            served, failed = sum(s.served for s in stats), sum(s.failed for s in stats)
            mem = f", peak RSS {rss.result()} MB" if rss is not None else ""
            print(f"  {time.monotonic() - t0:6.0f} s: served {served}, failed {failed}, "
                  f"in flight {run.in_flight}{mem}; loadavg {_loadavg()}", flush=True)  # fmt: skip
    for t, s in zip(threads, stats, strict=True):
        if t.is_alive():  # stuck past the hard timeout: count what it still holds as failed
            s.failed += 1
            s.errors.append("still waiting at the hard timeout")


def run_load(
    url: str,
    users: int = 16,
    duration_s: float = 120.0,
    auth: tuple[str, str] | None = None,
    max_requests: int = 10_000,
    hard_timeout_s: float | None = None,
    progress: bool = True,
    rss: RssSampler | None = None,
    settings: dict | None = None,
) -> LoadTestResult:
    """Run the load against ``url``; returns the result (see :class:`LoadTestResult`)."""
    if users < 1 or duration_s <= 0 or max_requests < 1:
        raise BodyShapeError("--users, --duration and --max-requests must be positive")
    # Requests still running at the deadline are waited for; the queue drains in roughly
    # users x (time per request) / (workers), so give it several minutes beyond --duration.
    hard_timeout_s = hard_timeout_s or duration_s + max(300.0, 20.0 * users)
    run = _Run(url, auth, max_requests, users)
    stats = [UserStats(u) for u in range(users)]
    tmp = Path(tempfile.mkdtemp(prefix="bodyshape-loadtest-"))
    try:
        threads = _start_users(run, stats, tmp)
        load_before = _loadavg()
        t0 = time.monotonic()
        run.deadline, run.hard_deadline = t0 + duration_s, t0 + hard_timeout_s
        run.start.set()
        if progress:
            print(f"loadtest: {users} users against {url} for {duration_s:.0f} s "
                  f"(hard timeout {hard_timeout_s:.0f} s); loadavg {load_before}", flush=True)  # fmt: skip
        _watch(run, threads, stats, t0, progress, rss)
        wall = time.monotonic() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _summary(url, duration_s, wall, stats, rss, settings, (load_before, _loadavg()))


def _summary(url: str, duration_s: float, wall: float, stats: list[UserStats], rss: RssSampler | None,
             settings: dict | None, loadavg: tuple[str, str]) -> LoadTestResult:  # fmt: skip
    latencies = [x for s in stats for x in s.latencies_s]
    served, failed = sum(s.served for s in stats), sum(s.failed for s in stats)
    errors = [f"user {s.user}: {e}" for s in stats for e in s.errors]
    return LoadTestResult(
        url=url, users=len(stats), duration_s=duration_s, wall_s=round(wall, 2), served=served, failed=failed,
        throughput_rps=round(served / wall, 3) if wall > 0 else 0.0,
        latency_s={k: round(v, 3) for k, v in _percentiles(latencies).items()},
        server_time_s={k: round(v, 3) for k, v in _percentiles([x for s in stats for x in s.server_s]).items()},
        per_user=[{"user": s.user, "served": s.served, "failed": s.failed,
                   "p50_s": round(float(np.median(s.latencies_s)), 3) if s.latencies_s else None}
                  for s in stats],
        errors=errors[:50], peak_rss_mb=rss.result() if rss is not None else {},
        loadavg_before=loadavg[0], loadavg_after=loadavg[1], settings=dict(settings or {}),
        machine={"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
    )  # fmt: skip


# ----------------------------------------------------------------------------- report
def format_report(r: LoadTestResult) -> str:
    lat, srv = r.latency_s, r.server_time_s

    def row(name: str, d: dict[str, float]) -> str:
        if not d:
            return f"| {name} | - | - | - | - | - |"
        return f"| {name} | {d['p50']:.2f} | {d['p95']:.2f} | {d['p99']:.2f} | {d['max']:.2f} | {d['mean']:.2f} |"

    lines = [
        f"bodyshape loadtest: {r.users} users, {r.duration_s:.0f} s (+ drain: wall {r.wall_s:.1f} s) against {r.url}",
        f"settings: {json.dumps(r.settings)}" if r.settings else "",
        "",
        f"served {r.served}, failed {r.failed}, throughput {r.throughput_rps:.2f} req/s",
        "",
        "| seconds | p50 | p95 | p99 | max | mean |",
        "|---|---:|---:|---:|---:|---:|",
        row("latency (client: upload + queue + work)", lat),
        row("server work (page's 'Done in')", srv),
        "",
        "per user (served/failed): "
        + ", ".join(f"{u['user']}: {u['served']}/{u['failed']}" for u in r.per_user),
        f"peak RSS (MB): {r.peak_rss_mb or 'n/a (pass no --url to measure)'}",
        f"loadavg before: {r.loadavg_before}   after: {r.loadavg_after}   ({r.machine['cpus']} CPUs)",
    ]
    if r.errors:
        lines += ["", f"first errors ({len(r.errors)} shown):"] + [f"  {e}" for e in r.errors[:10]]
    lines.append("")
    lines.append("RESULT: " + ("OK, no failed request" if r.ok else "FAILED"))
    return "\n".join(x for i, x in enumerate(lines) if x or i)


# ----------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=None,
                        help="a running page (http://host:port); default: start Triton + the page here")  # fmt: skip
    parser.add_argument("--users", type=int, default=16, help="simulated users at once (default 16)")
    parser.add_argument("--duration", type=float, default=120.0,
                        help="seconds during which users start new requests (default 120)")  # fmt: skip
    parser.add_argument("--max-requests", type=int, default=10_000, help="per user at most (default 10000)")
    parser.add_argument("--hard-timeout", type=float, default=None,
                        help="stop waiting after this many seconds in all; unanswered requests fail "
                             "(default: duration + max(300, 20 x users))")  # fmt: skip
    parser.add_argument("--auth", default=os.environ.get("BODYSHAPE_DEMO_AUTH"),
                        help="USER:PASSWORD if the page has a login (default: env BODYSHAPE_DEMO_AUTH)")  # fmt: skip
    parser.add_argument("--concurrency", type=int, default=None,
                        help="in-process page only: reconstructions at once (default: the demo's)")  # fmt: skip
    parser.add_argument("--queue-size", type=int, default=None,
                        help="in-process page only: queue size (default: the demo's)")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def run(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING)
    auth = parse_auth(args.auth)
    left: list[int] = []
    common = dict(users=args.users, duration_s=args.duration, auth=auth, max_requests=args.max_requests,
                  hard_timeout_s=args.hard_timeout, progress=not args.quiet)  # fmt: skip
    if args.url:
        if args.concurrency or args.queue_size:
            raise BodyShapeError("--concurrency/--queue-size only apply to the in-process page (no --url)")
        result = run_load(args.url.rstrip("/"), settings={"page": "external"}, **common)
    else:
        from demo.page import DEFAULT_CONCURRENCY, DEFAULT_QUEUE_SIZE
        from demo.security import private_upload_dir

        private_upload_dir()  # as `bodyshape demo` does

        settings = {
            "page": "in-process (bundled Triton + Gradio on 127.0.0.1)",
            "concurrency": args.concurrency or DEFAULT_CONCURRENCY,
            "queue_size": args.queue_size or DEFAULT_QUEUE_SIZE,
        }
        if not args.quiet:
            print("loadtest: starting the bundled Triton and the page on 127.0.0.1 ...", flush=True)
        with local_stack(args.concurrency, args.queue_size, auth) as stack:
            pgid = stack.triton.pid
            rss = RssSampler(os.getpid(), pgid)
            result = run_load(stack.url, rss=rss, settings=settings, **common)
        left = _group_pids(pgid) if pgid else []
        result.settings["triton_processes_left_after_stop"] = len(left)
    print(format_report(result), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(asdict(result), indent=1) + "\n")
    if not args.url and left:
        print(f"loadtest: Triton processes still running after stop: {left}", file=sys.stderr)
        return 1
    return 0 if result.ok else 1


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="bodyshape loadtest")
    add_arguments(p)
    sys.exit(run(p.parse_args()))
