"""Where the in-distribution error comes from: the training mask noise, one kind at a time.

    python -m training.mask_noise_floor            # ~15 min on 2 cores (400 bodies, 16 noise variants)

The held-out test set (the in-distribution split) is rendered with the training data's mask
noise (:class:`bodyshape.augment.MaskNoise`: erosion/dilation, ragged edges, holes, spill blobs,
hair, shoes, a floor shadow). This renders bodies of their own seed (never a training,
calibration or evaluation seed) in the jittered capture pose, each view once, and then applies
each noise variant to the *same* clean renders (same bodies, poses and cameras; the noise of a
row drawn from the row's own seed), so the variants differ by the noise alone. Each variant is
read as the page reads it (four looks, eight sub-pixel phases) and corrected by the shipped
measurement correction (before the refit, which moves a bare body's girths by a fraction of a
millimetre: docs/evaluation.md, "The refit in two Gauss-Newton steps"). Prints chest / waist /
hip MAE and bias per variant: no noise, each kind alone, all of them (the test set's), and all
but each kind.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

#: The kinds of mask noise, by the MaskNoise fields that switch each on (the probability first).
KINDS: dict[str, tuple[str, ...]] = {
    "morph": ("p_morph", "morph_max_px"),
    "rough": ("p_rough", "rough_amp"),
    "holes": ("p_holes",),
    "blobs": ("p_blobs", "blob_max_px"),
    "hair": ("p_hair",),
    "shoes": ("p_shoes",),
    "shadow": ("p_shadow",),
}
SEED = 5301


def variants():
    """name -> MaskNoise: none, each kind alone, all (the training noise), all but each kind."""
    from bodyshape.augment import NO_NOISE, MaskNoise

    full = MaskNoise()

    def only(kinds: list[str]) -> MaskNoise:
        return dataclasses.replace(NO_NOISE, **{f: getattr(full, f) for k in kinds for f in KINDS[k]})

    out = {"none": NO_NOISE}
    out |= {f"{k} only": only([k]) for k in KINDS}
    out["all (the test set's)"] = full
    out |= {f"all but {k}": only([j for j in KINDS if j != k]) for k in KINDS}
    return out


def clean_renders(n: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """``n`` bodies of ``seed`` rendered like the test set but without mask noise and unmirrored ->
    (front masks, side masks) lists of 0/255 renders, and the truth (n, M)."""
    import bodyshape.augment as augment
    from bodyshape.body_model import get_body_model
    from bodyshape.measurements import get_measurer
    from training.generate import render_batch
    from training.splits import test_set_config

    cfg = dataclasses.replace(test_set_config(n, seed), p_flip=0.0)
    model = get_body_model()
    rng = np.random.default_rng(seed)
    shapes = model.sample_shapes(n, seed=seed)
    masks: list[np.ndarray] = []
    keep = augment.apply_mask_noise
    # the generator's own rendering (pose jitter, cameras), with its noise step replaced by one
    # that keeps the clean render: the variants' noise is applied to it afterwards
    augment.apply_mask_noise = lambda mask, view, rng, noise=None: masks.append(mask) or mask
    try:
        truth = []
        for i in range(0, n, 50):
            *_, rest = render_batch(model, shapes[i : i + 50], cfg, rng)
            truth.append(get_measurer().batch(rest))
    finally:
        augment.apply_mask_noise = keep
    # render_batch renders per chunk: all fronts of the chunk, then all sides
    fronts, sides = [], []
    for i in range(0, n, 50):
        k = min(50, n - i)
        chunk, masks = masks[: 2 * k], masks[2 * k :]
        fronts += chunk[:k]
        sides += chunk[k:]
    return fronts, sides, np.concatenate(truth)


def noisy_canvases(renders: list[np.ndarray], view: str, noise, seed: int) -> np.ndarray:
    from bodyshape.augment import apply_mask_noise
    from bodyshape.silhouette import normalize_silhouette

    v = ("front", "side").index(view)
    return np.stack([normalize_silhouette(apply_mask_noise(m, view, np.random.default_rng([seed, i, v]), noise))
                     for i, m in enumerate(renders)])  # fmt: skip


def main() -> None:
    from bodyshape.correction import load_correction, requested_change
    from bodyshape.measurements import MEASUREMENT_NAMES
    from bodyshape.paths import WEIGHTS_DIR
    from bodyshape.report import slashed
    from training.evaluate import network_bodies

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=400)
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    a = p.parse_args()
    girths = [MEASUREMENT_NAMES.index(g) for g in ("chest", "waist", "hip")]
    correction = load_correction(a.weights)
    fronts, sides, truth = clean_renders(a.n, a.seed)
    height = truth[:, MEASUREMENT_NAMES.index("height")].astype(np.float32)
    print(f"{a.n} bodies of seed {a.seed}, capture pose with the training jitter; chest / waist / hip, mm, "
          "the shipped network (four looks) and correction, before the refit")  # fmt: skip
    print("| mask noise | network MAE | corrected MAE | corrected bias |")
    print("|---|---|---|---|")
    for name, noise in variants().items():
        front = noisy_canvases(fronts, "front", noise, a.seed)
        side = noisy_canvases(sides, "side", noise, a.seed)
        point, _, shape = network_bodies(a.weights / "fused.safetensors", front, side, height)
        # what the page asks the refit for on bare bodies: the correction's change, no allowance
        corrected = point + requested_change(shape, height, point, front, side, correction, np.zeros(point.shape[1]))
        net, err = 1000 * (point - truth)[:, girths], 1000 * (corrected - truth)[:, girths]
        print(f"| {name} | {slashed(np.abs(net).mean(0))} | {slashed(np.abs(err).mean(0))} | {slashed(err.mean(0), '+.1f')} |",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
