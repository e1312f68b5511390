"""Persons captured again and again, off the evaluation seeds: what a second capture changes.

The repeatability split (training/splits.py) photographs each of 30 dressed people 10 times,
re-framed, through rembg and the page's path; it is only ever judged. The same construction
with other seeds gives sets to *choose* on: ``python -m training.capture_factors`` (seed 4243)
holds one capture factor fixed at a time, and the measurement correction learns, from the
persons of seed 4243, how much a re-capture moves each of its inputs
(:func:`recapture_deviations`), and is judged on the persons of seed 4244
(``python -m training.correction_ablation``). Neither seed is a training, calibration or
evaluation seed. The clothing allowance is fitted, with plain-framed pairs, on the persons of
seed 4246 (training/calibrate_intervals.py: CLOTHING_RECAPTURES) and judged on those of 4244
(``python -m training.allowance_ablation``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from training.splits import Reframing

#: The persons a re-capture's changes are learned from (also training.capture_factors' default).
NOISE_SEED = 4243
#: The persons the correction's steadiness is judged on.
JUDGE_SEED = 4244
#: Persons and captures each of the two sets.
NOISE_CAPTURES = (16, 8)
JUDGE_CAPTURES = (30, 8)


def draw_captures(persons: int, frames: int, seed: int) -> tuple[list, list[int], list[list[Reframing]], np.ndarray]:
    """``persons`` dressed bodies of ``seed`` in the capture pose (hair, a cloth margin), each
    to be captured ``frames`` times in one room and outfit -> (their photo masks, their scenes,
    each capture's :class:`Reframing`, the true measurements (persons, M))."""
    from bodyshape.body_model import get_body_model
    from bodyshape.measurements import get_measurer
    from training.splits import dressed_masks

    model = get_body_model()
    shapes = model.sample_shapes(persons, seed=seed)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    masks, scenes, draws = [], [], []
    for shape in shapes:
        masks.append(dressed_masks(shape, rng))
        scenes.append(int(rng.integers(2**32)))
        draws.append([Reframing.draw(rng) for _ in range(frames)])
    return masks, scenes, draws, get_measurer().batch(model.forward(shapes).rest_vertices)


def recapture_set(weights: Path, persons: int, frames: int, seed: int, cache: Path) -> dict[str, np.ndarray]:
    """Every capture of :func:`draw_captures` through rembg and the page's normalisation, read
    by the network in ``weights`` as the page reads it (four looks), cached in ``cache`` ->
    ``front``, ``side``, ``height``, ``truth``, ``person``, the correction's ``inputs`` and the
    network's mean body (``point``, its measurements; ``shape``)."""
    from bodyshape.correction import correction_inputs
    from bodyshape.measurements import DEFINITIONS_VERSION
    from bodyshape.photo import get_segmenter
    from bodyshape.uncertainty import file_sha256
    from training.capture_factors import VARIANTS, capture_silhouettes
    from training.evaluate import network_bodies
    from training.splits import FORMAT, segmentation_tag

    key = (f"recaptures_seed{seed}_{persons}x{frames}_v{FORMAT}{segmentation_tag()}_d{DEFINITIONS_VERSION}_"
           f"{file_sha256(weights)[:12]}")  # fmt: skip
    path = cache / f"{key}.npz"
    if not path.exists():
        masks, scenes, draws, truth = draw_captures(persons, frames, seed)
        split_variant = next(v for k, v in VARIANTS.items() if k.startswith("split (every"))
        front, side = capture_silhouettes(masks, scenes, draws, split_variant, get_segmenter())
        person = np.repeat(np.arange(persons), frames)
        height = truth[person, 0].copy()
        point, _, shape = network_bodies(weights, front, side, height)
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, front=front, side=side, height=height, truth=truth[person], person=person, point=point,
                 shape=shape, inputs=correction_inputs(point, shape, height, front, side),
                 about=json.dumps({"seed": seed, "persons": persons, "frames": frames}))  # fmt: skip
        tmp.replace(path)
    with np.load(path) as z:
        return {k: z[k] for k in z.files if k != "about"}


def recapture_deviations(inputs: np.ndarray, person: np.ndarray) -> np.ndarray:
    """(N, F) inputs of re-captured persons -> (N, F) each capture's difference from its
    person's mean, scaled by sqrt(n / (n - 1)) so that a deviation drawn at random has the
    variance of one capture around the person (not around the sample mean of n captures)."""
    out = np.empty_like(np.asarray(inputs, np.float64))
    for p in np.unique(person):
        rows = person == p
        n = int(rows.sum())
        out[rows] = (inputs[rows] - inputs[rows].mean(0)) * np.sqrt(n / max(n - 1, 1))
    return out.astype(np.float32)


def person_sd(values: np.ndarray, person: np.ndarray) -> np.ndarray:
    """(N, K) values of re-captured persons -> (K,) the SD over each person's captures, averaged
    over persons (the repeatability number)."""
    return np.mean([values[person == p].std(0, ddof=1) for p in np.unique(person)], axis=0)
