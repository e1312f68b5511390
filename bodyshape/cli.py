"""``bodyshape <stage> ...``: one entry point for every pipeline stage.

Each stage lives in its own module exposing ``add_arguments(parser)`` and ``run(args)``;
the module is imported only when its stage runs, so ``bodyshape --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: stage -> (module, one-line help). Order = the pipeline, data to demo.
STAGES: dict[str, tuple[str, str]] = {
    "generate": ("training.generate", "render a synthetic dataset of silhouette pairs"),
    "grid": ("training.grid", "write a PNG grid of random dataset samples"),
    "train": ("training.train", "staged training: front, side, fused (+ from-scratch control)"),
    "train-gpu": ("training.one_gpu", "one-GPU recipe: generate on all cores while the GPU trains, in a time budget"),
    "population": ("bodyshape.population", "synthetic population vs the ANSUR II survey: table in docs/measurements.md"),
    "fit-correction": ("training.fit_correction", "fit the measurement correction on a wide-pose dataset the network never saw"),
    "calibrate-intervals": ("training.calibrate_intervals", "fit the 80% measurement intervals on calibration splits (own seeds)"),
    "evaluate": ("training.evaluate", "evaluation table of the trained models on a held-out set"),
    "ship": ("training.ship", "copy a training run's weights into bodyshape/weights and re-export the Triton repository"),
    "export": ("export.export_model", "PyTorch -> ONNX (-> TensorRT) -> Triton model repository"),
    "serve": ("bodyshape.triton_server", "run the bundled Triton server on loopback"),
    "bench": ("export.bench", "perf_analyzer + in-process benchmark table"),
    "reconstruct": ("demo.reconstruct_cli", "photos -> mesh + measurements, no web page"),
    "capture-thresholds": ("demo.capture_thresholds", "derive the capture checks' thresholds from renders of known poses"),
    "demo": ("demo.app", "the Gradio web demo (starts the bundled Triton server)"),
    "loadtest": ("demo.loadtest", "N simulated users against the demo page (latency, throughput, failures)"),
    "setup": ("bodyshape.assets", "put offline assets in place (rembg u2netp weights)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="bodyshape", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="stage", metavar="STAGE", required=True)
    for name, (_, help_) in STAGES.items():
        sub.add_parser(name, help=help_, add_help=False)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in STAGES:
        parser.parse_args(argv)  # prints help or the "invalid choice" error and exits
        return 2
    stage = argv[0]
    module = importlib.import_module(STAGES[stage][0])
    stage_parser = argparse.ArgumentParser(prog=f"bodyshape {stage}", description=STAGES[stage][1])
    module.add_arguments(stage_parser)
    args = stage_parser.parse_args(argv[1:])
    from bodyshape.errors import BodyShapeError

    try:
        return int(module.run(args) or 0)
    except BodyShapeError as e:
        print(f"bodyshape {stage}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
