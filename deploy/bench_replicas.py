"""Throughput of 1, 2, 3 bundled Triton replicas behind HAProxy on this machine (docs/scaling.md).

    .venv/bin/python deploy/bench_replicas.py                    # perf_analyzer + the page's load test
    .venv/bin/python deploy/bench_replicas.py --replicas 1 2 --no-page --json /tmp/r.json

For each replica count: a :class:`bodyshape.replicas.ReplicaSet` on loopback, then
``perf_analyzer`` (``export.bench.run_perf_analyzer``, HTTP, no shared memory: the balancer
sits between) against the balancer for ``body_pipeline`` and ``body_shape`` at batch 1, and
the page's load test (``demo.loadtest.run_load``, the page on the balancer's address). With 1
replica, ``perf_analyzer`` also runs against the replica itself: the balancer's own cost.
Prints a Markdown table with the ratio to 1 replica and the load average around each run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _inputs(tmp: Path) -> Path:
    from bodyshape.checkpoint import load_model
    from bodyshape.paths import WEIGHTS_DIR
    from export.bench import write_input_data
    from export.onnx_export import example_inputs

    f, s, h = example_inputs(load_model(WEIGHTS_DIR / "fused.safetensors"), batch=1, seed=0)
    return write_input_data(tmp / "input.json", f[0], s[0], float(h[0, 0]))


def measure(counts: list[int], models: list[str], concurrency: int, page: bool, users: int,
            seconds: float, protocol: str) -> list[dict]:  # fmt: skip
    from bodyshape.replicas import ReplicaSet
    from export.bench import run_perf_analyzer

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = _inputs(Path(tmp))
        for n in counts:
            with ReplicaSet(n).start(say=lambda m: print("  " + m, flush=True)) as rs:
                targets = [("balancer", rs.grpc_url if protocol == "grpc" else rs.http_url)]
                if n == 1:
                    r0 = rs.replicas[0]
                    targets.append(("direct", r0.grpc_url if protocol == "grpc" else r0.http_url))
                for model in models:
                    for where, url in targets:
                        load0 = os.getloadavg()
                        r = run_perf_analyzer(model, url, data, 1, concurrency, protocol)
                        row = {"replicas": n, "what": f"perf_analyzer {model} {protocol} c{concurrency}",
                               "where": where, "per_s": r.infer_per_s, "p50_ms": r.p50_ms,
                               "p99_ms": r.p99_ms, "load": [load0[0], os.getloadavg()[0]]}  # fmt: skip
                        print(f"{n} replica(s), {row['what']} via {where}: {r.infer_per_s:.1f} inf/s, "
                              f"p50 {r.p50_ms:.1f} ms; load {row['load']}", flush=True)  # fmt: skip
                        rows.append(row)
                if page:
                    rows.append(_page_row(rs, n, users, seconds))
    one = {(r["what"], r["where"]): r["per_s"] for r in rows if r["replicas"] == 1}
    for r in rows:
        base = one.get((r["what"], "balancer"))
        r["ratio"] = round(r["per_s"] / base, 2) if base else None
    return rows


def _page_row(rs, n: int, users: int, seconds: float) -> dict:
    from demo.backend import TritonBackend
    from demo.loadtest import run_load
    from demo.page import serve_page

    with serve_page(TritonBackend(rs.http_url)) as page:
        res = run_load(page.url, users=users, duration_s=seconds, progress=False)
    row = {"replicas": n, "what": f"page load test, {users} users", "where": "balancer",
           "per_s": res.throughput_rps, "p50_ms": res.latency_s.get("p50", 0) * 1e3,
           "p99_ms": res.latency_s.get("p99", 0) * 1e3, "failed": res.failed,
           "load": [float(res.loadavg_before.split()[0]), float(res.loadavg_after.split()[0])]}  # fmt: skip
    print(f"{n} replica(s), page: {res.throughput_rps:.2f} req/s, p50 {row['p50_ms']:.0f} ms, "
          f"failed {res.failed}; load {row['load']}", flush=True)  # fmt: skip
    return row


def to_markdown(rows: list[dict]) -> str:
    lines = ["| replicas | what | via | throughput /s | ratio to 1 replica | p50 ms | p99 ms | load avg before → after |",
             "|---:|---|---|---:|---:|---:|---:|---|"]  # fmt: skip
    for r in sorted(rows, key=lambda r: (r["what"], r["where"] != "balancer", r["replicas"])):
        ratio = f"{r['ratio']:.2f}" if r.get("ratio") and r["where"] == "balancer" else "-"
        lines.append(f"| {r['replicas']} | {r['what']} | {r['where']} | {r['per_s']:.2f} | {ratio} | "
                     f"{r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['load'][0]:.2f} → {r['load'][1]:.2f} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--models", nargs="+", default=["body_pipeline", "body_shape"])
    p.add_argument("--concurrency", type=int, default=6, help="perf_analyzer requests in flight (default 6)")
    p.add_argument("--protocol", choices=["http", "grpc"], default="http")
    p.add_argument("--no-page", action="store_true", help="skip the page's load test")
    p.add_argument("--users", type=int, default=8)
    p.add_argument("--seconds", type=float, default=40.0, help="load test duration per replica count")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    t0 = time.time()
    rows = measure(args.replicas, args.models, args.concurrency, not args.no_page, args.users,
                   args.seconds, args.protocol)  # fmt: skip
    print(f"\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(t0))}, {os.cpu_count()} CPUs\n")
    print(to_markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
