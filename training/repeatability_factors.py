"""Where the repeatability scatter comes from: each re-framing factor alone, on rendered masks.

    python -m training.repeatability_factors --n 40 --seed 7777      # ~4 min on 2 cores
    python -m training.repeatability_factors --phases 1              # the 0/1 body only

The repeatability split (training/splits.py: ``reframe``) changes scale, camera roll, shift,
brightness and JPEG quality at once, and goes through rembg. Here the masks of ``--n`` bodies
(capture pose, 560 px tall, no rembg) are changed by one factor at a time before the page's
normalisation (``normalize_silhouette``), and the network's TTA-mean body is measured (no
correction, no refit), read at ``--phases`` sub-pixel phases (default the product's,
``SUBPIXEL_PHASES``; 1 reads only the canvas's 0/1 body, as the product did before). Printed: each variant's mean shift of chest / waist / hip against the
unchanged masks, and the per-person SD over the variants. ``--jitter`` also averages the
network's shapes over five jittered copies of each normalised pair (identity, roll +-1 deg,
rescaled by 0.8 and 0.9), to see whether more test-time looks average the scatter away.
Bodies of ``--seed`` (default 7777, not a calibration or evaluation seed); heights 1.55-1.95 m.
"""

from __future__ import annotations

import argparse
from functools import partial

import numpy as np

from bodyshape.report import slashed


def rolled(mask: np.ndarray, deg: float) -> np.ndarray:
    """The mask turned by ``deg`` about its centre (padded so that nothing is cut off)."""
    import cv2

    pad = cv2.copyMakeBorder(mask, 40, 40, 80, 80, cv2.BORDER_CONSTANT, value=0)
    h, w = pad.shape
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
    return (cv2.warpAffine(pad, rot, (w, h), flags=cv2.INTER_LINEAR) > 127).astype(np.uint8) * 255


def rescaled(mask: np.ndarray, factor: float) -> np.ndarray:
    import cv2

    interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    return (cv2.resize(mask.astype(np.float32), None, fx=factor, fy=factor, interpolation=interp) > 127).astype(np.uint8) * 255


def main() -> None:
    from bodyshape.body_model import get_body_model
    from bodyshape.measurements import MEASUREMENT_NAMES, get_measurer
    from bodyshape.reconstruct import LocalPredictor, mesh_from_shape
    from bodyshape.silhouette import normalize_silhouette
    from bodyshape.uncertainty import N_TTA, tta_inputs
    from demo.synthetic import render_masks

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=40)
    p.add_argument("--seed", type=int, default=7777)
    p.add_argument("--jitter", action="store_true", help="also average over five jittered copies of each pair")
    p.add_argument("--phases", type=int, default=None, help="sub-pixel looks per canvas (default: the product's)")
    a = p.parse_args()
    girths = [MEASUREMENT_NAMES.index(g) for g in ("chest", "waist", "hip")]
    shapes = get_body_model().sample_shapes(a.n, seed=a.seed)
    heights = (1.55 + 0.4 * np.random.default_rng(a.seed).random(a.n)).astype(np.float32)
    masks = [render_masks(s) for s in shapes]
    predictor = LocalPredictor(phases=a.phases)

    def body_px(mask: np.ndarray, px: int) -> np.ndarray:
        rows = np.flatnonzero(mask.any(1))
        return rescaled(mask, px / (rows[-1] - rows[0] + 1))

    variants = {"unchanged": lambda m: m}
    variants |= {f"roll {d:+.1f} deg": partial(rolled, deg=d) for d in (-3.0, -1.5, 1.5, 3.0)}
    variants |= {f"body {px} px tall": partial(body_px, px=px) for px in (300, 400, 500)}
    looks = [lambda n: n]
    if a.jitter:
        looks += [lambda n: normalize_silhouette(rolled(n, -1.0)), lambda n: normalize_silhouette(rolled(n, 1.0)),
                  lambda n: normalize_silhouette(rescaled(n, 0.8)), lambda n: normalize_silhouette(rescaled(n, 0.9))]  # fmt: skip
    out = {}
    for name, change in variants.items():
        front = np.stack([normalize_silhouette(change(f)) for f, _ in masks])
        side = np.stack([normalize_silhouette(change(s)) for _, s in masks])
        mean = np.mean([predictor.predict_shape(*tta_inputs(np.stack([look(x) for x in front]),
                                                             np.stack([look(x) for x in side]), heights))
                        .reshape(N_TTA, a.n, -1).mean(0) for look in looks], axis=0)  # fmt: skip
        out[name] = get_measurer().batch(mesh_from_shape(mean.astype(np.float32), heights))[:, girths] * 1000
        shift = (out[name] - out["unchanged"]).mean(0)
        print(f"{name:18s} chest / waist / hip shift {shift[0]:+5.1f} / {shift[1]:+5.1f} / {shift[2]:+5.1f} mm", flush=True)

    def sd(keys: list[str]) -> str:
        x = np.stack([out[k] for k in keys]).std(0, ddof=1).mean(0)
        return slashed(x)

    looks_said = f"{len(looks) * N_TTA} looks" if a.jitter else f"{N_TTA} looks"
    print(f"per-person SD, chest / waist / hip mm ({a.n} bodies, {looks_said}, {predictor.reader.phases} phases): roll alone {sd(list(variants)[:5])}; "
          f"resolution alone {sd(['unchanged'] + list(variants)[5:])}; all {sd(list(variants))}")


if __name__ == "__main__":
    main()
