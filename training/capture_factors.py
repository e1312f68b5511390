"""Where the repeatability scatter comes from on the photo path: one capture factor fixed at a time.

    python -m training.capture_factors                      # 16 persons x 8 captures, ~25 min on 2 cores
    python -m training.capture_factors --only split roll    # variants whose label has one of these words

The repeatability split (training/splits.py) photographs each person again and again with a
new :class:`training.splits.Reframing` each time (scale, camera roll, shift, brightness, JPEG
quality) and sends every photo through rembg and the page's normalisation. Here ``--persons``
dressed bodies of ``--seed`` (default 4243: not a training, calibration or evaluation seed) are
captured ``--frames`` times with the same draws in every variant, and each variant holds one
factor fixed (or changes how the photo is segmented). Printed, per variant: the per-person SD
of chest / waist / hip, averaged over persons (the repeatability number), and the MAE and bias
of those captures, as the page reports them (four looks, correction, refit, the clothing
declared "fitted"), and how many captures a capture check warns on. Rendered masks without
rembg, factor by factor: ``python -m training.repeatability_factors``.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bodyshape.report import slashed
from training.splits import Reframing

GIRTHS = ("chest", "waist", "hip")


def _fixed(**fields) -> Callable[[Reframing], Reframing]:
    return lambda how: dataclasses.replace(how, **fields)


#: Variant -> (how it changes each capture's framing, a new scene each capture, how the photo is
#: segmented: False for the page's (rembg, then again zoomed on the person:
#: :func:`bodyshape.photo.person_probability`), "one run" for rembg once (the page until
#: 2026-12-05), "phased" for the segmenter tried below). The square and tight zoomed segmenters
#: tried on 2026-12-02 (docs/evaluation.md) are in git history before 2026-12-05.
VARIANTS: dict[str, tuple[Callable[[Reframing], Reframing], bool, bool | str]] = {
    "split (every factor varies; one room and outfit a person)": (lambda how: how, False, False),
    "scale fixed (body at 0.72 of the photo)": (_fixed(body_frac=(0.72, 0.72)), False, False),
    "roll fixed (0 deg)": (_fixed(roll_deg=(0.0, 0.0)), False, False),
    "shift fixed (centred, 2% down)": (_fixed(center=(0.5, 0.5), drop=(0.02, 0.02)), False, False),
    "brightness fixed": (_fixed(brightness=(1.0, 1.0)), False, False),
    "JPEG fixed (quality 95)": (_fixed(jpeg_quality=95), False, False),
    "a new room and outfit colours each capture (the split until 2026-12-02)": (lambda how: how, True, False),
    "framing fixed, a new room and outfit colours each capture": (
        _fixed(body_frac=(0.72, 0.72), center=(0.5, 0.5), drop=(0.02, 0.02), roll_deg=(0.0, 0.0),
               brightness=(1.0, 1.0), jpeg_quality=95), True, False),  # fmt: skip
    "split, rembg run once (no zoomed second run; the page until 2026-12-05)": (lambda how: how, False, "one run"),
    "split, rembg's probabilities averaged over 4 half-pixel shifts of the photo": (lambda how: how, False, "phased"),
}


class PhasedSegmenter:
    """rembg's probability averaged over the photo shifted by 0 and half of one of rembg's
    320 x 320 input pixels in each direction (4 runs), each shifted back: the sub-pixel phases
    of bodyshape.nets.SubpixelReader, for the segmentation. Tried, see docs/evaluation.md."""

    def __init__(self, segmenter) -> None:
        self.segmenter = segmenter

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        import cv2

        h, w = rgb.shape[:2]
        total = np.zeros((h, w), np.float32)
        for dy in (0.0, 0.5 * h / 320):
            for dx in (0.0, 0.5 * w / 320):
                move = np.float32([[1, 0, dx], [0, 1, dy]])
                moved = cv2.warpAffine(rgb, move, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                prob = self.segmenter(moved).astype(np.float32)
                total += cv2.warpAffine(prob, move, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                        borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
        return np.clip(np.rint(total / 4), 0, 255).astype(np.uint8)


def capture_silhouettes(masks: list, scenes: list[int], draws: list[list[Reframing]], variant: tuple,
                        segmenter) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Every person's every capture under ``variant``, through ``segmenter`` and the page's path."""
    from tqdm import tqdm

    from training.splits import page_silhouettes, reframe

    change, new_scene, _ = variant
    fronts, sides = [], []
    for i in tqdm(range(len(masks)), unit="person", leave=False):
        for f, how in enumerate(draws[i]):
            photos = reframe(masks[i], scenes[i] + 7919 * (f + 1) if new_scene else scenes[i], change(how))
            front, side = page_silhouettes(photos, segmenter, zoom=variant[2] != "one run")
            fronts.append(front)
            sides.append(side)
    return np.stack(fronts), np.stack(sides)


def main() -> None:
    from bodyshape.capture import check_masks
    from bodyshape.correction import MeasurementCorrection, load_correction
    from bodyshape.measurements import MEASUREMENT_NAMES
    from bodyshape.paths import WEIGHTS_DIR
    from bodyshape.photo import get_segmenter
    from bodyshape.uncertainty import load_intervals
    from training.evaluate import predict_measurements
    from training.recaptures import NOISE_SEED, draw_captures, person_sd
    from training.splits import Split

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--persons", type=int, default=16)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--seed", type=int, default=NOISE_SEED)
    p.add_argument("--only", nargs="*", default=None, help="variants whose label contains one of these")
    p.add_argument("--refit-steps", type=int, default=None,
                   help="Gauss-Newton steps of the refit (default: bodyshape.refit.STEPS, what the page does)")
    p.add_argument("--correction", type=Path, default=None,
                   help="a correction to use instead of the shipped one for fitted clothing (e.g. a candidate)")
    a = p.parse_args()
    if a.refit_steps is not None:
        import bodyshape.refit

        bodyshape.refit.STEPS = a.refit_steps
    variants = {k: v for k, v in VARIANTS.items() if not a.only or any(o in k for o in a.only)}
    if not variants:
        p.error(f"--only {' '.join(a.only)} matches no variant; the variants are:\n" + "\n".join(VARIANTS))
    masks, scenes, draws, truth = draw_captures(a.persons, a.frames, a.seed)
    person = np.repeat(np.arange(a.persons), a.frames)
    g = [MEASUREMENT_NAMES.index(n) for n in GIRTHS]
    intervals = load_intervals(WEIGHTS_DIR)
    correction = MeasurementCorrection.load(a.correction) if a.correction else load_correction(WEIGHTS_DIR, "fitted")
    from bodyshape.refit import STEPS

    print(f"{a.persons} persons x {a.frames} captures of seed {a.seed}, refit in {STEPS} Gauss-Newton steps; "
          "chest / waist / hip, mm\n")
    print("| variant | per-person SD | MAE | bias | captures warned |\n|---|---|---|---|---|")
    for label, variant in variants.items():
        segmenter = PhasedSegmenter(get_segmenter()) if variant[2] == "phased" else get_segmenter()
        front, side = capture_silhouettes(masks, scenes, draws, variant, segmenter)
        split = Split(label, front, side, truth[person, 0].copy(), truth[person], person)
        point = predict_measurements(WEIGHTS_DIR / "fused.safetensors", split, intervals, "fitted", correction).point
        got = 1000 * point[:, g].reshape(a.persons, a.frames, len(g))
        err = got - 1000 * truth[:, None, g]
        sd = person_sd(1000 * point[:, g], person)
        warned = sum(any(not c.passed for c in check_masks(f, s)) for f, s in zip(front, side, strict=True))
        print(f"| {label} | " + " | ".join(slashed(v, fmt) for v, fmt in
                                         ((sd, ".1f"), (np.abs(err).mean((0, 1)), ".1f"), (err.mean((0, 1)), "+.1f")))
              + f" | {warned} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
