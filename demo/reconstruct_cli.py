"""``bodyshape reconstruct front.jpg side.jpg --height 178 -o body.obj``: the page's path, no page.

Writes the mesh (``.obj``, or ``.glb`` by the output's suffix; metres, Z up) and, next to it,
``<stem>_measurements.json`` (and ``.csv``), and prints the measurements in cm and inches
(``--explain``: each with how to measure it yourself, to compare) and the capture checks'
warnings (:mod:`bodyshape.capture`: what to change in the photos; also in the JSON). Uses the bundled
Triton server unless ``--triton-url`` (or env ``BODYSHAPE_TRITON_URL``) names one;
``--local`` runs the network in this process instead (no server).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bodyshape.clothing import CLOTHING, DEFAULT_CLOTHING
from bodyshape.errors import BodyShapeError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("front", type=Path, help="front photo (facing the camera, arms ~45 deg out)")
    parser.add_argument("side", type=Path, help="side photo (facing the picture's right edge, arms down)")
    parser.add_argument("--height", type=float, required=True, help="the person's height in cm")
    parser.add_argument("--clothing", choices=list(CLOTHING), default=DEFAULT_CLOTHING,
                        help="what the person wears: " + "; ".join(f"{k}: {v}" for k, v in CLOTHING.items()))
    parser.add_argument(
        "-o", "--output", type=Path, default=Path("body.obj"), help="mesh file (.obj or .glb)"
    )
    parser.add_argument("--triton-url", default=os.environ.get("BODYSHAPE_TRITON_URL"),
                        help="Triton server host:port (default: env BODYSHAPE_TRITON_URL, else start the bundled one)")  # fmt: skip
    parser.add_argument("--protocol", choices=["http", "grpc"], default="http")
    parser.add_argument("--local", action="store_true", help="run the network in this process (no Triton)")
    parser.add_argument("--save-silhouettes", action="store_true",
                        help="also write the two normalised silhouettes the network saw (PNG)")  # fmt: skip
    parser.add_argument("--explain", action="store_true",
                        help="under each measurement, print how to measure it yourself (ISO 8559-1)")  # fmt: skip


def measurement_lines(
    measurements: dict[str, float], explain: bool = False, intervals: dict[str, tuple[float, float]] | None = None
) -> list[str]:
    """The printed table: label, cm, inches, the 80% range in cm (and the "how to measure" line
    with ``explain``)."""
    from demo.pipeline import RANGE_HEADER, measurement_values

    lines = []
    for v in measurement_values(measurements, intervals):
        rng = v.range_text("cm")
        lines.append(f"  {v.spec.label:18s} {v.cm:6.1f} cm {v.inches:6.1f} in" + (f"   {RANGE_HEADER} {rng} cm" if rng else ""))
        if explain:
            lines.append(f"      {v.spec.how_to_measure}")
    return lines


def capture_lines(checks) -> list[str]:
    """The printed capture feedback: one line per failed check, or one line saying all passed."""
    failed = [c for c in checks if not c.passed]
    if not failed:
        return [f"capture checks: all {len(checks)} passed"]
    return [f"capture warnings ({len(failed)} of {len(checks)} checks; the result may be less accurate, its 80% ranges are wider):"] + [
        f"  ! {c.message}" for c in failed
    ]


def run(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    import cv2

    from bodyshape.assets import u2netp_path
    from bodyshape.reconstruct import check_height_cm
    from demo.backend import open_backend
    from demo.pipeline import reconstruct_photos, write_outputs

    check_height_cm(args.height)  # before starting a server
    u2netp_path()  # rembg's weights: fail now, naming `bodyshape setup`, not after starting Triton

    suffix = args.output.suffix.lower()
    if suffix not in (".obj", ".glb"):
        raise BodyShapeError(f"the output must end in .obj or .glb, got {args.output}")

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    with open_backend(args.triton_url, args.protocol, args.local, say=say) as backend:
        result = reconstruct_photos(args.front, args.side, args.height, backend, clothing=args.clothing)
    out = args.output
    stem = out.stem
    with tempfile.TemporaryDirectory() as tmp:
        files = write_outputs(result, tmp, stem)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(files[suffix[1:]], out)
        for kind in ("json", "csv"):
            shutil.move(files[kind], out.parent / files[kind].name)
    if args.save_silhouettes:
        for view in ("front", "side"):
            cv2.imwrite(str(out.parent / f"{stem}_{view}_silhouette.png"), getattr(result, view).silhouette)
    print(f"mesh: {out}\nmeasurements: {out.parent / (stem + '_measurements.json')}")
    print("\n".join(measurement_lines(result.measurements, args.explain, result.intervals)))
    if not args.explain:
        print("  (--explain: how to measure each yourself, to compare)")
    print("\n".join(capture_lines(result.checks)))
    print(f"clothing: {result.clothing} ({CLOTHING[result.clothing]})"
          + ("; the body is fitted under the calibrated cloth allowance" if result.clothing != DEFAULT_CLOTHING else ""))
    t = result.timings
    print(
        f"time: rembg {t['rembg']:.2f} s, model ({backend.name}) {t['model']:.2f} s, measurements {t['measure']:.2f} s"
    )
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="bodyshape reconstruct")
    add_arguments(p)
    sys.exit(run(p.parse_args()))
