"""``bodyshape bench``: perf_analyzer against Triton + the same model in-process, one table.

In one run, on the same inputs (one silhouette pair + height, repeated to the batch size):
- Triton (bundled server on loopback, or ``--url``): ``perf_analyzer`` for ``body_shape`` and
  the ``body_pipeline`` ensemble at concurrency 1, 2, 4, 8 and batch 1 and 8;
- in-process, sequential calls: ONNX Runtime on the same ``model.onnx`` (1 and 2 intra-op
  threads; the faster is the baseline) and PyTorch eager; for the pipeline the same plus
  ``mesh_from_shape``.
Prints a Markdown table (inferences/s, p50/p99 latency, Triton / best in-process ratio) and
writes it to ``docs/benchmarks.md``.

perf_analyzer comes from the ``tritonclient==2.51.0`` wheel; it needs Debian's ``libb64-0d``
and ``libcudart.so.12`` (``nvidia-cuda-runtime-cu12`` wheel) on ``LD_LIBRARY_PATH`` (set here).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bodyshape.errors import BodyShapeError
from bodyshape.paths import MODEL_REPOSITORY, REPO_DIR

DEFAULT_OUT = REPO_DIR / "docs" / "benchmarks.md"
MODELS = ("body_shape", "body_pipeline")
#: Targets from the issue, checked at the end of a run.
TARGET_RATIO_C4 = 0.70


@dataclass
class Row:
    model: str
    where: str  # "triton grpc" / "ORT 1 thread" / ...
    batch: int
    concurrency: int
    infer_per_s: float
    p50_ms: float
    p99_ms: float
    ratio: float | None = None  # Triton / best in-process, same model and batch


# ------------------------------------------------------------------ perf_analyzer
def perf_analyzer_env() -> tuple[str, dict[str, str]]:
    """(path of perf_analyzer, environment with libcudart on LD_LIBRARY_PATH)."""
    exe = Path(sys.executable).parent / "perf_analyzer"
    if not exe.is_file():
        found = shutil.which("perf_analyzer")
        if not found:
            raise BodyShapeError(
                "perf_analyzer not found: pip install 'tritonclient[all]==2.51.0' (manylinux wheel)"
            )
        exe = Path(found)
    env = dict(os.environ)
    try:
        import nvidia.cuda_runtime as cr

        libdir = Path(next(iter(cr.__path__))) / "lib"
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(libdir), env.get("LD_LIBRARY_PATH", "")) if p
        )
    except ImportError:
        pass  # a system CUDA runtime may still be found; the check below says what is missing
    probe = subprocess.run([str(exe), "--version"], env=env, capture_output=True, text=True)
    if probe.returncode != 0:
        msg = (probe.stderr or probe.stdout).strip()
        hint = ""
        if "libb64" in msg:
            hint = " Install Debian's libb64: apt-get install -y libb64-0d."
        elif "libcudart" in msg:
            hint = " Install the CUDA runtime wheel: pip install nvidia-cuda-runtime-cu12."
        raise BodyShapeError(f"perf_analyzer cannot start: {msg}.{hint}")
    return str(exe), env


def write_input_data(path: Path, front: np.ndarray, side: np.ndarray, height_m: float) -> Path:
    """perf_analyzer's --input-data JSON for one batch element (it repeats it to the batch size)."""
    data = {
        "data": [
            {
                "FRONT": {"content": front.reshape(-1).tolist(), "shape": list(front.shape)},
                "SIDE": {"content": side.reshape(-1).tolist(), "shape": list(side.shape)},
                "HEIGHT": {"content": [float(height_m)], "shape": [1]},
            }
        ]
    }
    path.write_text(json.dumps(data))
    return path


def run_perf_analyzer(
    model: str,
    url: str,
    input_data: Path,
    batch: int = 1,
    concurrency: int = 1,
    protocol: str = "grpc",
    measurement_interval_ms: int = 3000,
    max_trials: int = 6,
    stability_percentage: int = 25,
    timeout_s: float = 180.0,
) -> Row:
    """One perf_analyzer measurement (``concurrency`` requests in flight, ``batch`` per request).

    On a shared, busy machine perf_analyzer may find no 3 windows within ``stability_percentage``
    of each other; it is then rerun with a looser bound (the table states the windows used).
    """
    args = [
        *("-m", model, "-u", url, "-i", protocol, "-b", str(batch)),
        f"--concurrency-range={concurrency}",
        f"--input-data={input_data}",
        f"--measurement-interval={measurement_interval_ms}",
        f"--max-trials={max_trials}",
    ]
    last: BodyShapeError | None = None
    for pct in (stability_percentage, 100, 1000):
        try:
            rec = _perf_analyzer_once(model, [*args, f"--stability-percentage={pct}"], timeout_s)
        except _Unstable as e:
            last = e
            continue
        # perf_analyzer counts inferences (requests x batch) per second; latencies in microseconds.
        return Row(
            model,
            f"Triton {protocol}",
            batch,
            concurrency,
            float(rec["Inferences/Second"]),
            float(rec["p50 latency"]) / 1e3,
            float(rec["p99 latency"]) / 1e3,
        )
    raise last


class _Unstable(BodyShapeError):
    pass


def _perf_analyzer_once(model: str, args: list[str], timeout_s: float) -> dict[str, str]:
    """perf_analyzer's CSV record for one run with ``args``; _Unstable if it found no stable window."""
    exe, env = perf_analyzer_env()
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "pa.csv"
        cmd = [exe, *args, "-f", str(csv_path)]
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as e:
            raise BodyShapeError(f"perf_analyzer timed out after {timeout_s:.0f} s: {' '.join(cmd)}") from e
        if not csv_path.is_file():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            if "stable measurement" in tail:
                raise _Unstable(f"perf_analyzer found no stable measurement for {model}:\n{tail}")
            raise BodyShapeError(f"perf_analyzer failed (exit {proc.returncode}) for {model}:\n{tail}")
        with open(csv_path) as f:
            return next(csv.DictReader(f))


# ------------------------------------------------------------------ in-process
def time_calls(fn, batch: int, seconds: float, warmup: int = 3) -> tuple[float, float, float]:
    """Sequential calls of ``fn`` for about ``seconds``: (inferences/s, p50 ms, p99 ms)."""
    for _ in range(warmup):
        fn()
    lat = []
    t0 = time.perf_counter()
    while True:
        t = time.perf_counter()
        fn()
        lat.append(time.perf_counter() - t)
        if time.perf_counter() - t0 >= seconds and len(lat) >= 5:
            break
    total = time.perf_counter() - t0
    ms = np.asarray(lat) * 1e3
    return batch * len(lat) / total, float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n > 1 else ''}"


def _engines(onnx_path: Path, net, threads):
    """(name, thread count, fn(front, side, height) -> shape) for each in-process engine.

    Yielded one at a time, the ORT session dropped before the next (idle ORT threads spin and
    would slow the next engine down).
    """
    import torch

    from export.onnx_export import ort_session

    for n in threads:
        sess = ort_session(onnx_path, intra_op_threads=n)
        yield (
            f"ORT {_plural(n, 'thread')}",
            n,
            lambda f, s, h, sess=sess: sess.run(None, {"FRONT": f, "SIDE": s, "HEIGHT": h})[0],
        )
        del sess

    def run_torch(f, s, h):
        with torch.inference_mode():
            return net(torch.from_numpy(f), torch.from_numpy(s), torch.from_numpy(h)).numpy()

    for n in threads:
        yield f"PyTorch eager {_plural(n, 'thread')}", n, run_torch


def _model_call(model: str, fn, inputs: tuple[np.ndarray, ...], body):
    """A no-argument call of ``model`` on ``inputs``: the net alone, or the net + Anny's mesh."""
    f, s, h = inputs
    if model == "body_shape":
        return lambda: fn(f, s, h)
    from bodyshape.reconstruct import mesh_from_shape

    return lambda: mesh_from_shape(fn(f, s, h), h.reshape(-1), model=body)


def in_process_rows(
    onnx_path: Path,
    weights: Path,
    front: np.ndarray,
    side: np.ndarray,
    height_m: float,
    batches=(1, 8),
    models=MODELS,
    seconds: float = 4.0,
    threads=(1, 2),
    log=print,
) -> list[Row]:
    """Sequential in-process calls: ONNX Runtime and PyTorch eager, each at ``threads`` threads.

    The pipeline rows add ``mesh_from_shape`` (Anny, PyTorch at the same thread count).
    """
    import torch

    from bodyshape.checkpoint import load_model
    from export.onnx_export import UInt8SilhouetteModel

    net = UInt8SilhouetteModel(load_model(weights)).eval()
    body = None
    if "body_pipeline" in models:
        from bodyshape.body_model import get_body_model

        body = get_body_model()
    inputs = {
        b: (np.repeat(front[None], b, 0), np.repeat(side[None], b, 0), np.full((b, 1), height_m, np.float32))
        for b in batches
    }
    torch_threads = torch.get_num_threads()
    rows = []
    try:
        for name, n, fn in _engines(onnx_path, net, threads):
            torch.set_num_threads(n)  # also the thread count of Anny in the pipeline rows
            for model in models:
                for b in batches:
                    ips, p50, p99 = time_calls(_model_call(model, fn, inputs[b], body), b, seconds)
                    rows.append(Row(model, f"in-process {name}", b, 1, ips, p50, p99))
                    log(f"  {model} in-process {name} b{b}: {ips:.0f} inf/s, p50 {p50:.1f} ms")
    finally:
        torch.set_num_threads(torch_threads)
    return rows


# ------------------------------------------------------------------ the whole run
def bench(
    url: str | None = None,
    protocol: str = "http",
    models=MODELS,
    batches=(1, 8),
    concurrencies=(1, 2, 4, 8),
    measurement_interval_ms: int = 3000,
    in_process_seconds: float = 4.0,
    threads=(1, 2),
    model_repository: Path = MODEL_REPOSITORY,
    log=print,
) -> tuple[list[Row], dict]:
    from bodyshape.paths import WEIGHTS_DIR
    from export.onnx_export import example_inputs

    weights = WEIGHTS_DIR / "fused.safetensors"
    onnx_path = Path(model_repository) / "body_shape" / "1" / "model.onnx"
    if not onnx_path.is_file():
        raise BodyShapeError(f"{onnx_path} not found: run `bodyshape export` first")
    perf_analyzer_env()  # fail early with the install hint

    from bodyshape.checkpoint import load_model

    f, s, h = example_inputs(load_model(weights), batch=1, seed=0)
    front, side, height_m = f[0], s[0], float(h[0, 0])

    log("in-process runs ...")
    rows = in_process_rows(
        onnx_path, weights, front, side, height_m, batches, models, in_process_seconds, threads, log=log
    )

    from bodyshape.triton_server import BundledTriton

    server = None
    if url is None:
        log("starting the bundled Triton server ...")
        server = BundledTriton(model_repository).start()
        url = server.grpc_url if protocol == "grpc" else server.http_url
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data = write_input_data(Path(tmp) / "input.json", front, side, height_m)
            for model in models:
                for b in batches:
                    for c in concurrencies:
                        r = run_perf_analyzer(model, url, data, b, c, protocol, measurement_interval_ms)
                        log(f"  {model} Triton b{b} c{c}: {r.infer_per_s:.0f} inf/s, p50 {r.p50_ms:.1f} ms")
                        rows.append(r)
    finally:
        if server is not None:
            server.stop()

    set_ratios(rows)
    return rows, {"url": url, "bundled": server is not None, "protocol": protocol}


def set_ratios(rows: list[Row]) -> None:
    """Each Triton row's ratio to the best in-process row of the same model and batch."""
    best: dict[tuple[str, int], float] = {}
    for r in rows:
        if r.where.startswith("in-process"):
            key = (r.model, r.batch)
            best[key] = max(best.get(key, 0.0), r.infer_per_s)
    for r in rows:
        if not r.where.startswith("in-process") and (r.model, r.batch) in best:
            r.ratio = r.infer_per_s / best[(r.model, r.batch)]


def check_targets(rows: list[Row]) -> list[tuple[str, bool, str]]:
    def get(model, batch, conc, where="Triton"):
        for r in rows:
            if r.model == model and r.batch == batch and r.concurrency == conc and r.where.startswith(where):
                return r
        return None

    out = []
    c4, c1, c8 = get("body_shape", 1, 4), get("body_shape", 1, 1), get("body_shape", 1, 8)
    ort = max(
        (
            r
            for r in rows
            if r.model == "body_shape" and r.batch == 1 and r.where.startswith("in-process ORT")
        ),
        key=lambda r: r.infer_per_s,
        default=None,
    )
    if c4 and ort:
        ok = c4.infer_per_s >= TARGET_RATIO_C4 * ort.infer_per_s
        out.append(
            (
                f"body_shape batch 1: Triton at concurrency 4 >= {TARGET_RATIO_C4:.0%} of in-process ONNX Runtime",
                ok,
                f"{c4.infer_per_s:.0f} vs {ort.infer_per_s:.0f} inf/s ({ort.where}): {c4.infer_per_s / ort.infer_per_s:.0%}",
            )
        )
    if c1 and c8:
        ok = c8.infer_per_s > c1.infer_per_s
        out.append(
            (
                "body_shape batch 1: dynamic batching, concurrency 8 > concurrency 1",
                ok,
                f"{c8.infer_per_s:.0f} vs {c1.infer_per_s:.0f} inf/s",
            )
        )
    return out


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except Exception:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPU cores ({cpu}), {gpu}, {platform.system()} {platform.release()}; load average at the end: {load}"


def to_markdown(rows: list[Row], targets, meta: dict, machine: str, command: str) -> str:
    from bodyshape.silhouette import CANVAS_HW
    from export.triton_repository import ServingConfig

    sc = ServingConfig()
    h, w = CANVAS_HW
    lines = [
        "# Benchmarks: Triton (perf_analyzer) vs in-process",
        "",
        f"Generated by `{command}` on {datetime.date.today().isoformat()}.",
        "",
        f"- Machine: {machine}.",
        f"- Server: {'bundled tritonserver 2.51 (nvidia-pytriton wheel) on loopback' if meta['bundled'] else meta['url']}, "
        f"perf_analyzer 2.51 over {meta['protocol']}, same inputs (one uint8 {h}x{w} silhouette pair + "
        "height, repeated to the batch size).",
        f"- body_shape serving config: Python backend + ONNX Runtime, {sc.shape_instances} instance(s), "
        f"{sc.ort_threads} ORT intra-op thread(s), dynamic batching max_queue_delay {sc.shape_queue_delay_us} us, "
        f"max_batch_size {sc.max_batch_size}. body_mesh: {sc.mesh_instances} instance(s), "
        f"{sc.torch_threads} torch thread(s), queue delay {sc.mesh_queue_delay_us} us.",
        "- In-process rows are sequential calls (concurrency 1) in the benchmark process; "
        "ratio = Triton / the best in-process row of the same model and batch.",
        "",
        "| model | where | batch | concurrency | inferences/s | p50 ms | p99 ms | Triton / in-process |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else ""
        lines.append(
            f"| {r.model} | {r.where} | {r.batch} | {r.concurrency} | {r.infer_per_s:.1f} | "
            f"{r.p50_ms:.2f} | {r.p99_ms:.2f} | {ratio} |"
        )
    lines += ["", "Targets (issue 5):", ""]
    for name, ok, detail in targets:
        lines.append(f"- {'PASS' if ok else 'FAIL'}: {name}: {detail}")
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default=None, help="use this Triton server instead of starting the bundled one"
    )
    parser.add_argument("--protocol", choices=("http", "grpc"), default="http")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--measurement-interval-ms", type=int, default=3000)
    parser.add_argument("--in-process-seconds", type=float, default=4.0)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="in-process thread counts")
    parser.add_argument("--model-repository", type=Path, default=MODEL_REPOSITORY)
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="Markdown file for the table ('-': none)"
    )


def run(args: argparse.Namespace) -> int:
    rows, meta = bench(
        url=args.url,
        protocol=args.protocol,
        models=tuple(args.models),
        batches=tuple(args.batch),
        concurrencies=tuple(args.concurrency),
        measurement_interval_ms=args.measurement_interval_ms,
        in_process_seconds=args.in_process_seconds,
        threads=tuple(args.threads),
        model_repository=args.model_repository,
    )
    targets = check_targets(rows)
    command = "bodyshape bench " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else "bodyshape bench"
    md = to_markdown(rows, targets, meta, machine_description(), command.strip())
    print()
    print(md)
    if str(args.out) != "-":
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(md)
        print(f"written to {args.out}")
    return 0
