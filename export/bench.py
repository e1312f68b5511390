"""``bodyshape bench``: perf_analyzer against Triton + the same model in-process, one table.

In one run, on the same inputs (one silhouette pair + height, repeated to the batch size):
- in-process, sequential calls: ONNX Runtime on the same ``model.onnx`` (1 and 2 intra-op
  threads; the faster is the baseline) and PyTorch eager; for the pipeline the same plus
  ``mesh_from_shape``;
- Triton (bundled server on loopback, or ``--url``): ``perf_analyzer`` for ``body_shape`` and
  the ``body_pipeline`` ensemble at concurrency 1, 2, 4, 8, batch 1 and 8, over HTTP and
  gRPC, tensors in system shared memory (``--shared-memory``), with perf_analyzer's
  server-side breakdown (queue, compute input / infer / output) and client overhead;
- CPU time per inference of every setup (the server's process group + perf_analyzer, or the
  benchmark process): on a machine that others share, the throughput of a run depends on
  their load, the CPU cost per inference much less.
Prints a Markdown table with the ratio Triton / best in-process and the targets of issue 14,
writes it to ``docs/benchmarks.md`` and a summary to the README, each between the
``<!-- bench:start -->`` / ``<!-- bench:end -->`` markers (the rest of those files is left
alone), with the date, the machine and its load average before and after.

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
DEFAULT_README = REPO_DIR / "README.md"
#: The bench rewrites what lies between these markers in docs/benchmarks.md and the README.
BLOCK_START, BLOCK_END = "<!-- bench:start -->", "<!-- bench:end -->"
MODELS = ("body_shape", "body_pipeline")
#: Targets of issue 14, checked at the end of a run: body_shape at batch 1 and concurrency 4
#: against the best in-process ONNX Runtime run; body_pipeline at concurrency 4 against the
#: best in-process chain (ONNX Runtime or PyTorch + Anny).
TARGET_SHAPE_C4 = 0.85
TARGET_PIPELINE_C4 = 1.0
#: perf_analyzer's CSV columns of the latency breakdown (microseconds), in table order.
BREAKDOWN = {
    "client send": "Client Send",
    "network": "Network+Server Send/Recv",
    "queue": "Server Queue",
    "compute input": "Server Compute Input",
    "compute infer": "Server Compute Infer",
    "compute output": "Server Compute Output",
    "client recv": "Client Recv",
}


@dataclass
class Row:
    model: str
    where: str  # "Triton grpc, shm system" / "in-process ORT 1 thread" / ...
    batch: int
    concurrency: int
    infer_per_s: float
    p50_ms: float
    p99_ms: float
    ratio: float | None = None  # Triton / best in-process, same model and batch
    cpu_ms: float | None = None  # CPU time per inference: server group + perf_analyzer, or in-process
    breakdown: dict[str, float] | None = None  # perf_analyzer's latency breakdown, us (BREAKDOWN)
    avg_batch: float | None = None  # inferences per model execution on the server (dynamic batching)

    @property
    def triton(self) -> bool:
        return self.where.startswith("Triton")


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
    shared_memory: str = "none",
    server: ServerProbe | None = None,
) -> Row:
    """One perf_analyzer measurement (``concurrency`` requests in flight, ``batch`` per request).

    ``shared_memory="system"``: inputs and outputs travel in system shared memory regions that
    perf_analyzer registers with the server (same host only). ``server``: where to read the
    server's CPU time and execution count, for the CPU cost per inference and the average
    dynamic batch. On a shared, busy machine perf_analyzer may find no 3 windows within
    ``stability_percentage`` of each other; it is then rerun with a looser bound.
    """
    args = [
        *("-m", model, "-u", url, "-i", protocol, "-b", str(batch)),
        f"--concurrency-range={concurrency}",
        f"--input-data={input_data}",
        f"--measurement-interval={measurement_interval_ms}",
        f"--max-trials={max_trials}",
        f"--shared-memory={shared_memory}",
    ]
    where = f"Triton {protocol}" + (f", shm {shared_memory}" if shared_memory != "none" else "")
    last: BodyShapeError | None = None
    for pct in (stability_percentage, 100, 1000):
        before = server.sample(model) if server else None
        try:
            rec, cpu_s = _perf_analyzer_once(model, [*args, f"--stability-percentage={pct}"], timeout_s)
        except _Unstable as e:
            last = e
            continue
        row = Row(
            model,
            where,
            batch,
            concurrency,
            # perf_analyzer counts inferences (requests x batch) per second; latencies in us.
            float(rec["Inferences/Second"]),
            float(rec["p50 latency"]) / 1e3,
            float(rec["p99 latency"]) / 1e3,
            breakdown={k: float(rec[col]) for k, col in BREAKDOWN.items() if rec.get(col)},
        )
        if before is not None:
            cpu, inferences, executions = server.since(model, before)
            if inferences:
                row.cpu_ms = (cpu + cpu_s) * 1e3 / inferences
                row.avg_batch = inferences / executions if executions else None
        return row
    raise last


class _Unstable(BodyShapeError):
    pass


def _children_cpu_s() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _perf_analyzer_once(model: str, args: list[str], timeout_s: float) -> tuple[dict[str, str], float]:
    """(perf_analyzer's CSV record, its CPU seconds) for one run; _Unstable if it found no stable window."""
    exe, env = perf_analyzer_env()
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "pa.csv"
        cmd = [exe, *args, "-f", str(csv_path)]
        cpu0 = _children_cpu_s()
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as e:
            raise BodyShapeError(f"perf_analyzer timed out after {timeout_s:.0f} s: {' '.join(cmd)}") from e
        cpu_s = _children_cpu_s() - cpu0
        if not csv_path.is_file():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            if "stable measurement" in tail:
                raise _Unstable(f"perf_analyzer found no stable measurement for {model}:\n{tail}")
            raise BodyShapeError(f"perf_analyzer failed (exit {proc.returncode}) for {model}:\n{tail}")
        with open(csv_path) as f:
            return next(csv.DictReader(f)), cpu_s


def process_group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of process group ``pgid``."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) "
        if int(fields[2]) == pgid:  # pgrp; utime and stime are fields 14 and 15 of the line
            total += int(fields[11]) + int(fields[12])
    return total / tick


@dataclass
class ServerProbe:
    """Reads a local server's CPU time (its process group) and a model's counters (HTTP stats)."""

    http_url: str
    pgid: int | None

    def _counts(self, model: str) -> tuple[int, int]:
        import urllib.request

        with urllib.request.urlopen(f"http://{self.http_url}/v2/models/{model}/stats", timeout=10) as r:
            stats = json.load(r)["model_stats"][0]
        return int(stats["inference_count"]), int(stats["execution_count"])

    def sample(self, model: str) -> tuple[float, int, int]:
        cpu = process_group_cpu_s(self.pgid) if self.pgid else 0.0
        return (cpu, *self._counts(model))

    def since(self, model: str, before: tuple[float, int, int]) -> tuple[float, int, int]:
        """(server CPU seconds, inferences, executions) since ``before``."""
        now = self.sample(model)
        return now[0] - before[0], now[1] - before[1], now[2] - before[2]


# ------------------------------------------------------------------ in-process
def time_calls(fn, batch: int, seconds: float, warmup: int = 3) -> tuple[float, float, float, float]:
    """Sequential calls of ``fn`` for about ``seconds``: (inferences/s, p50 ms, p99 ms, CPU ms per inference)."""
    import resource

    for _ in range(warmup):
        fn()
    lat = []
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    while True:
        t = time.perf_counter()
        fn()
        lat.append(time.perf_counter() - t)
        if time.perf_counter() - t0 >= seconds and len(lat) >= 5:
            break
    total = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) * 1e3 / (batch * len(lat))
    ms = np.asarray(lat) * 1e3
    return batch * len(lat) / total, float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), cpu


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n > 1 else ''}"


def _engines(onnx_path: Path, net, threads, device: str = "cpu"):
    """(name, thread count, fn(front, side, height) -> shape) for each in-process engine.

    Yielded one at a time, the ORT session dropped before the next (idle ORT threads spin and
    would slow the next engine down). ``device="gpu"``: ONNX Runtime's CUDA provider and
    PyTorch on CUDA (the thread count is then that of the CPU side).
    """
    import torch

    from export.onnx_export import ort_session

    gpu = device == "gpu"
    providers = ("CUDAExecutionProvider", "CPUExecutionProvider") if gpu else ("CPUExecutionProvider",)
    tag = " CUDA" if gpu else ""
    for n in threads:
        sess = ort_session(onnx_path, intra_op_threads=n, providers=providers)
        if sess.get_providers()[0] != providers[0]:
            raise BodyShapeError(f"ONNX Runtime runs on {sess.get_providers()}, not {providers[0]}")
        yield (
            f"ORT{tag} {_plural(n, 'thread')}",
            n,
            lambda f, s, h, sess=sess: sess.run(None, {"FRONT": f, "SIDE": s, "HEIGHT": h})[0],
        )
        del sess

    dev = torch.device("cuda" if gpu else "cpu")
    net = net.to(dev)

    def run_torch(f, s, h):
        with torch.inference_mode():
            out = net(torch.from_numpy(f).to(dev), torch.from_numpy(s).to(dev), torch.from_numpy(h).to(dev))
            return out.cpu().numpy()

    for n in threads:
        yield f"PyTorch eager{tag} {_plural(n, 'thread')}", n, run_torch


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
    device: str = "cpu",
) -> list[Row]:
    """Sequential in-process calls: ONNX Runtime and PyTorch eager, each at ``threads`` threads.

    The pipeline rows add ``mesh_from_shape`` (Anny, PyTorch at the same thread count, on
    ``device``).
    """
    import torch

    from bodyshape.checkpoint import load_model
    from export.onnx_export import UInt8SilhouetteModel

    net = UInt8SilhouetteModel(load_model(weights)).eval()
    body = None
    if "body_pipeline" in models:
        from bodyshape.body_model import get_body_model

        body = get_body_model("cuda" if device == "gpu" else "cpu")
    inputs = {
        b: (np.repeat(front[None], b, 0), np.repeat(side[None], b, 0), np.full((b, 1), height_m, np.float32))
        for b in batches
    }
    torch_threads = torch.get_num_threads()
    rows = []
    try:
        for name, n, fn in _engines(onnx_path, net, threads, device):
            torch.set_num_threads(n)  # also the thread count of Anny in the pipeline rows
            for model in models:
                for b in batches:
                    ips, p50, p99, cpu = time_calls(_model_call(model, fn, inputs[b], body), b, seconds)
                    rows.append(Row(model, f"in-process {name}", b, 1, ips, p50, p99, cpu_ms=cpu))
                    log(f"  {model} in-process {name} b{b}: {ips:.0f} inf/s, p50 {p50:.1f} ms")
    finally:
        torch.set_num_threads(torch_threads)
    return rows


# ------------------------------------------------------------------ the whole run
@dataclass
class Meta:
    """What a run was: server, protocols, device, and the machine's load before and after."""

    url: str
    bundled: bool
    protocols: tuple[str, ...]
    shared_memory: str
    device: str
    model_config_name: str | None
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    seconds: float = 0.0


def bench(
    url: str | None = None,
    protocols=("http", "grpc"),
    models=MODELS,
    batches=(1, 8),
    concurrencies=(1, 2, 4, 8),
    measurement_interval_ms: int = 3000,
    in_process_seconds: float = 4.0,
    threads=(1, 2),
    model_repository: Path = MODEL_REPOSITORY,
    shared_memory: str = "system",
    device: str = "cpu",
    log=print,
) -> tuple[list[Row], Meta]:
    from bodyshape.paths import WEIGHTS_DIR
    from export.onnx_export import example_inputs
    from export.triton_repository import GPU_CONFIG_NAME

    t_start = time.monotonic()
    weights = WEIGHTS_DIR / "fused.safetensors"
    onnx_path = Path(model_repository) / "body_shape" / "1" / "model.onnx"
    if not onnx_path.is_file():
        raise BodyShapeError(f"{onnx_path} not found: run `bodyshape export` first")
    if url is not None and shared_memory != "none" and url.split(":")[0] not in ("127.0.0.1", "localhost"):
        raise BodyShapeError(f"--shared-memory {shared_memory} needs a server on this host, not {url}")
    perf_analyzer_env()  # fail early with the install hint

    from bodyshape.checkpoint import load_model

    f, s, h = example_inputs(load_model(weights), batch=1, seed=0)
    front, side, height_m = f[0], s[0], float(h[0, 0])
    config_name = GPU_CONFIG_NAME if device == "gpu" else None
    meta = Meta("", url is None, tuple(protocols), shared_memory, device, config_name, os.getloadavg())

    log(f"in-process runs (load average {meta.load_before[0]:.2f}) ...")
    rows = in_process_rows(
        onnx_path, weights, front, side, height_m, batches, models, in_process_seconds, threads, log, device
    )

    from bodyshape.triton_server import BundledTriton

    server = None
    if url is None:
        log("starting the bundled Triton server ...")
        server = BundledTriton(model_repository, model_config_name=config_name).start()
    try:
        probe = ServerProbe(server.http_url, server.pid) if server else None
        urls = {
            p: (server.grpc_url if p == "grpc" else server.http_url) if server else url for p in protocols
        }
        meta.url = ", ".join(f"{p} {u}" for p, u in urls.items())
        with tempfile.TemporaryDirectory() as tmp:
            data = write_input_data(Path(tmp) / "input.json", front, side, height_m)
            for model in models:
                for b in batches:
                    for c in concurrencies:
                        for p in protocols:
                            r = run_perf_analyzer(
                                model, urls[p], data, b, c, p, measurement_interval_ms,
                                shared_memory=shared_memory, server=probe,
                            )  # fmt: skip
                            log(
                                f"  {model} Triton {p} b{b} c{c}: {r.infer_per_s:.0f} inf/s, p50 {r.p50_ms:.1f} ms"
                            )
                            rows.append(r)
    finally:
        if server is not None:
            server.stop()

    set_ratios(rows)
    meta.load_after = os.getloadavg()
    meta.seconds = time.monotonic() - t_start
    return rows, meta


def set_ratios(rows: list[Row]) -> None:
    """Each Triton row's ratio to the best in-process row of the same model and batch."""
    best: dict[tuple[str, int], float] = {}
    for r in rows:
        if not r.triton:
            key = (r.model, r.batch)
            best[key] = max(best.get(key, 0.0), r.infer_per_s)
    for r in rows:
        if r.triton and (r.model, r.batch) in best:
            r.ratio = r.infer_per_s / best[(r.model, r.batch)]


def _best(
    rows: list[Row], model: str, batch: int, triton: bool, concurrency: int | None = None, where: str = ""
):
    """The fastest row of ``model`` at ``batch`` (Triton at ``concurrency``, or in-process), or None."""
    found = [
        r
        for r in rows
        if r.model == model
        and r.batch == batch
        and r.triton == triton
        and (concurrency is None or r.concurrency == concurrency)
        and r.where.startswith(where)
    ]
    return max(found, key=lambda r: r.infer_per_s, default=None)


def check_targets(rows: list[Row]) -> list[tuple[str, bool, str]]:
    """The issue's targets: (what, met, the numbers). Triton rows: the best protocol."""
    out = []
    c4 = _best(rows, "body_shape", 1, True, 4)
    ort = _best(rows, "body_shape", 1, False, where="in-process ORT")
    if c4 and ort:
        ratio = c4.infer_per_s / ort.infer_per_s
        out.append(
            (
                f"body_shape batch 1: Triton at concurrency 4 >= {TARGET_SHAPE_C4:.2f} x the best in-process ONNX Runtime",
                ratio >= TARGET_SHAPE_C4,
                f"{c4.infer_per_s:.0f} ({c4.where}) vs {ort.infer_per_s:.0f} inf/s ({ort.where}): {ratio:.2f}",
            )
        )
    pipe = _best(rows, "body_pipeline", 1, True, 4)
    pipe_in = _best(rows, "body_pipeline", 1, False)
    if pipe and pipe_in:
        ratio = pipe.infer_per_s / pipe_in.infer_per_s
        out.append(
            (
                f"body_pipeline batch 1: Triton at concurrency 4 >= {TARGET_PIPELINE_C4:.2f} x the best in-process chain",
                ratio >= TARGET_PIPELINE_C4,
                f"{pipe.infer_per_s:.0f} ({pipe.where}) vs {pipe_in.infer_per_s:.0f} inf/s ({pipe_in.where}): {ratio:.2f}",
            )
        )
    c1, c8 = _best(rows, "body_shape", 1, True, 1), _best(rows, "body_shape", 1, True, 8)
    if c1 and c8:
        out.append(
            (
                "body_shape batch 1: dynamic batching, concurrency 8 > concurrency 1",
                c8.infer_per_s > c1.infer_per_s,
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
    return f"{os.cpu_count()} CPU cores ({cpu}), {gpu}, {platform.system()} {platform.release()}"


def _load(load: tuple[float, float, float]) -> str:
    return ", ".join(f"{x:.2f}" for x in load)


def load_note(meta: Meta) -> str:
    """The machine's load average before and after the run, and what it means for the numbers."""
    cores = os.cpu_count() or 1
    # Only the load before counts: the one after includes this bench's own Triton and clients.
    busy = meta.load_before[0] > 0.5
    verdict = (
        f"the machine was busy (other jobs on its {cores} cores): absolute numbers are low and noisy, "
        "the ratios and the CPU time per inference compare setups of the same run"
        if busy
        else "the machine was idle before the run (the load after is the bench's own)"
    )
    return f"load average (1, 5, 15 min) {_load(meta.load_before)} before, {_load(meta.load_after)} after: {verdict}"


def _ms(x: float | None) -> str:
    return f"{x:.2f}" if x is not None else ""


def to_markdown(rows: list[Row], targets, meta: Meta, machine: str, command: str) -> str:
    from bodyshape.silhouette import CANVAS_HW
    from export.triton_repository import ServingConfig

    sc = ServingConfig()
    h, w = CANVAS_HW
    server = "bundled tritonserver 2.51 (nvidia-pytriton wheel) on loopback" if meta.bundled else meta.url
    if meta.model_config_name:
        server += f", --model-config-name={meta.model_config_name}"
    lines = [
        f"Generated by `{command}` on {datetime.date.today().isoformat()} in {meta.seconds / 60:.0f} min.",
        "",
        f"- Machine: {machine}; {load_note(meta)}.",
        f"- Server: {server}; perf_analyzer 2.51 over {' and '.join(meta.protocols)}, shared memory: "
        f"{meta.shared_memory}; same inputs (one uint8 {h}x{w} silhouette pair + height, repeated to "
        "the batch size).",
        f"- body_shape serving config: Python backend + ONNX Runtime ({meta.device.upper()}), "
        f"{sc.shape_instances} instance(s), {sc.ort_threads} ORT intra-op thread(s) each, dynamic batching "
        f"max_queue_delay {sc.shape_queue_delay_us} us, max_batch_size {sc.max_batch_size}. body_mesh: "
        f"{sc.mesh_instances} instance(s), {sc.torch_threads} torch thread(s), queue delay {sc.mesh_queue_delay_us} us.",
        "- In-process rows are sequential calls (concurrency 1) in the benchmark process; "
        "ratio = Triton / the best in-process row of the same model and batch.",
        "- CPU ms/inf: CPU time (user + system) per inference: the server's processes + perf_analyzer "
        "for Triton rows, the benchmark process for in-process rows. avg batch: inferences per "
        "model execution on the server (dynamic batching; Triton counts one execution per ensemble request).",
        "",
        "| model | where | batch | concurrency | inferences/s | p50 ms | p99 ms | CPU ms/inf | avg batch | Triton / in-process |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else ""
        batch = f"{r.avg_batch:.1f}" if r.avg_batch is not None else ""
        lines.append(
            f"| {r.model} | {r.where} | {r.batch} | {r.concurrency} | {r.infer_per_s:.1f} | "
            f"{r.p50_ms:.2f} | {r.p99_ms:.2f} | {_ms(r.cpu_ms)} | {batch} | {ratio} |"
        )
    lines += [
        "",
        "Where the time of a Triton request goes (perf_analyzer's averages per request, microseconds: "
        "client send, network + server send/receive, server queue, compute input / infer / output, "
        "client receive):",
        "",
        "| model | where | batch | concurrency | " + " | ".join(BREAKDOWN) + " |",
        "| --- | --- | ---: | ---: |" + " ---: |" * len(BREAKDOWN),
    ]
    for r in rows:
        if r.triton and r.breakdown:
            cells = " | ".join(f"{r.breakdown.get(k, 0):.0f}" for k in BREAKDOWN)
            lines.append(f"| {r.model} | {r.where} | {r.batch} | {r.concurrency} | {cells} |")
    lines += ["", "Targets (issue 14):", ""]
    for name, ok, detail in targets:
        lines.append(f"- {'PASS' if ok else 'FAIL'}: {name}: {detail}")
    return "\n".join(lines)


def readme_block(rows: list[Row], targets, meta: Meta, machine: str, command: str) -> str:
    """The README's summary: body_shape and body_pipeline at batch 1, best protocol per concurrency."""
    lines = [
        f"`{command}`, {datetime.date.today().isoformat()}, {machine}; {load_note(meta)}. "
        "Full table and latency breakdown: [docs/benchmarks.md](docs/benchmarks.md).",
        "",
        "| batch 1 | where | inferences/s | p50 ms | CPU ms/inf | Triton / best in-process |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for model in MODELS:
        picked = []
        for where in ("in-process ORT", "in-process PyTorch"):
            r = _best(rows, model, 1, False, where=where)
            if r:
                picked.append((r.where.removeprefix("in-process "), r))
        for c in sorted({r.concurrency for r in rows if r.triton and r.model == model and r.batch == 1}):
            r = _best(rows, model, 1, True, c)
            picked.append((f"{r.where}, concurrency {c}", r))
        for label, r in picked:
            ratio = f"{r.ratio:.2f}" if r.ratio is not None else ""
            lines.append(
                f"| {model} | {label} | {r.infer_per_s:.0f} | {r.p50_ms:.1f} | {_ms(r.cpu_ms)} | {ratio} |"
            )
    lines.append("")
    for name, ok, detail in targets:
        lines.append(f"- {'PASS' if ok else 'FAIL'}: {name}: {detail}")
    return "\n".join(lines)


def write_block(path: Path, block: str, command: str, title: str | None = None) -> None:
    """Put ``block`` between the bench markers of ``path``, leaving the rest of the file alone.

    A file that does not exist yet is created (with ``title``); one without the markers is refused.
    """
    text = f"{BLOCK_START}\n<!-- written by `{command}`; do not edit by hand -->\n{block}\n{BLOCK_END}"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text((f"# {title}\n\n" if title else "") + text + "\n")
        return
    old = path.read_text()
    start, end = old.find(BLOCK_START), old.find(BLOCK_END)
    if start < 0 or end < start:
        raise BodyShapeError(f"{path} has no {BLOCK_START} ... {BLOCK_END} block for the bench's numbers")
    path.write_text(old[:start] + text + old[end + len(BLOCK_END) :])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default=None, help="use this Triton server instead of starting the bundled one"
    )
    parser.add_argument("--protocol", nargs="+", choices=("http", "grpc"), default=["http", "grpc"])
    parser.add_argument(
        "--shared-memory",
        choices=("system", "none"),
        default="system",
        help="perf_analyzer's tensors in system shared memory (same host) or in the requests",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "gpu"),
        default="cpu",
        help="gpu: the server's `gpu` config variant (ONNX Runtime CUDA, Anny on PyTorch CUDA) and "
        "in-process runs on CUDA",
    )
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--measurement-interval-ms", type=int, default=3000)
    parser.add_argument("--in-process-seconds", type=float, default=4.0)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="in-process thread counts")
    parser.add_argument("--model-repository", type=Path, default=MODEL_REPOSITORY)
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="Markdown file whose bench block gets the table ('-': none)",
    )
    parser.add_argument(
        "--readme",
        type=Path,
        default=DEFAULT_README,
        help="README whose bench block gets the summary ('-': none)",
    )


def run(args: argparse.Namespace) -> int:
    rows, meta = bench(
        url=args.url,
        protocols=tuple(args.protocol),
        models=tuple(args.models),
        batches=tuple(args.batch),
        concurrencies=tuple(args.concurrency),
        measurement_interval_ms=args.measurement_interval_ms,
        in_process_seconds=args.in_process_seconds,
        threads=tuple(args.threads),
        model_repository=args.model_repository,
        shared_memory=args.shared_memory,
        device=args.device,
    )
    targets = check_targets(rows)
    command = "bodyshape bench " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else "bodyshape bench"
    machine = machine_description()
    md = to_markdown(rows, targets, meta, machine, command.strip())
    print()
    print(md)
    if str(args.out) != "-":
        write_block(args.out, md, command.strip(), title="Benchmarks: Triton (perf_analyzer) vs in-process")
        print(f"written to {args.out}")
    if str(args.readme) != "-":
        write_block(args.readme, readme_block(rows, targets, meta, machine, command.strip()), command.strip())
        print(f"summary written to {args.readme}")
    return 0
