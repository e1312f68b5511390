"""``bodyshape capture-thresholds``: derive the capture checks' thresholds from renders of known poses.

The thresholds in :mod:`bodyshape.capture` come from here (docs/capture.md records a run):

1. *Good* captures: bodies rendered exactly as the training data is (``render_batch`` with the
   default :class:`~training.config.DataConfig`: jittered capture pose, camera jitter, mask
   noise). Each pose threshold is the 0.5th / 99.5th percentile of its feature over them, so
   about 1% of training-like captures warn per two-sided check.
2. *Bad* captures: the same bodies with one known pose change (``PoseOffsets``: arms, stance,
   lean, swing; a whole-body yaw; a camera roll), to report how far a pose must go before the
   check warns (detection rate per offset). For ``same_person``, front and side of two
   different bodies.
3. Framing: synthetic photos (:mod:`demo.synthetic`) with the person filling less and less of
   the frame, through rembg and the page's path; the silhouette's IoU with the clean render's,
   against the IoU that the training's mask noise leaves.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from bodyshape import capture

#: Percentiles of the good captures that bound each feature.
LOW_PCT, HIGH_PCT = 0.5, 99.5
#: Heavy thighs touch even in the capture pose, so the gap's low percentile can be 0 (no lower
#: limit at all); "too close" is then a gap under this fraction of the height: legs touching.
MIN_LEG_GAP = 0.005
#: Pose sweeps: check -> (what is changed, values). Degrees.
SWEEPS: dict[str, tuple[str, tuple[float, ...]]] = {
    "front_arms": ("arm_abduction", (-30, -20, -10, 10, 20, 30)),
    "front_feet": ("leg_spread", (-12, -8, -4, 4, 8, 12, 16)),
    "front_tilt": ("roll", (-8, -5, -3, 3, 5, 8)),
    "front_turned": ("yaw", (-40, -30, -25, -20, -10, 10, 20, 25, 30, 40)),
    "side_turned": ("yaw", (10, 20, 30, 40, 50)),
    "side_arms": ("arm_swing", (-30, -20, -10, 10, 20, 30)),
    "side_lean": ("torso_lean", (-10, -5, 5, 10, 15)),
}
#: Person heights as a fraction of the photo's height for the framing sweep.
FRAMING_FRACTIONS = (0.31, 0.36, 0.42, 0.5, 0.6, 0.82)


def features(front: np.ndarray, side: np.ndarray) -> dict[str, float | np.ndarray]:
    """The raw features of one normalised pair (per arm angles, pair ratios before scoring)."""
    f, s = capture._Body(front), capture._Body(side)
    return {
        "arm_angles": np.array([a for a, _ in capture.arm_angles(f)]),
        "front_feet": capture.leg_gap(f),
        "front_tilt": abs(capture.front_tilt(f)[0]),
        "front_turned": abs(capture.feet_turn(f)),
        "side_turned": capture.side_turn(s, f),
        "side_arms": capture.side_arm_reach(s),
        "side_lean": capture.side_lean(s),
        "pair_ratios": capture.pair_ratios(f, s),
        "side_outline": capture.neck_depth(s),
    }


def _render_roll(model, shapes: np.ndarray, rng: np.random.Generator, roll_deg: float):
    """Like the training render, with the camera rolled by ``roll_deg`` (one fixed roll)."""
    from bodyshape.augment import apply_mask_noise
    from bodyshape.body_model import capture_pose
    from bodyshape.render import Camera, render_silhouette
    from bodyshape.silhouette import normalize_silhouette
    from training.config import DataConfig

    cfg = DataConfig()
    out = []
    for view in ("front", "side"):
        verts = model.forward(shapes, capture_pose(view, len(shapes), rng, cfg.pose_jitter)).vertices
        sils = []
        for v in verts:
            cam = Camera(distance=rng.uniform(2, 4), height=rng.uniform(0.9, 1.6), roll_deg=roll_deg)
            mask = apply_mask_noise(render_silhouette(v, model.faces, view, cam, cfg.render_height_px), view, rng, cfg.noise)
            sils.append(normalize_silhouette(mask))
        out.append(np.stack(sils))
    return out[0], out[1]


def render(model, shapes: np.ndarray, seed: int, change: str | None = None, value: float = 0.0):
    """(front, side) normalised silhouettes of ``shapes``: the training render, plus one change."""
    from bodyshape.body_model import PoseOffsets
    from training.config import DataConfig
    from training.generate import render_batch

    rng = np.random.default_rng(seed)
    fronts, sides = [], []
    for c0 in range(0, len(shapes), 50):
        chunk = shapes[c0 : c0 + 50]
        n = len(chunk)
        if change == "roll":
            f, s = _render_roll(model, chunk, rng, value)
        else:
            offsets = yaw = None
            if change == "yaw":
                yaw = np.full(n, value)
            elif change:
                offsets = {view: PoseOffsets(**{change: value}) for view in ("front", "side")}
            f, s, _ = render_batch(model, chunk, DataConfig(), rng, offsets=offsets, extra_yaw_deg=yaw)
        fronts.append(f)
        sides.append(s)
    return np.concatenate(fronts), np.concatenate(sides)


def table(front: np.ndarray, side: np.ndarray) -> dict[str, np.ndarray]:
    rows = [features(f, s) for f, s in zip(front, side, strict=True)]
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


def pose_thresholds(good: dict[str, np.ndarray]) -> dict:
    """Thresholds from the good captures' features."""

    def pct(x: np.ndarray, q: float) -> float:
        return float(np.nanpercentile(x, q))

    arms = good["arm_angles"].ravel()
    ratios = good["pair_ratios"]
    ratios = ratios[np.isfinite(ratios).all(1)]
    mean, cov = ratios.mean(0), np.cov(ratios.T)
    inv = np.linalg.inv(cov)
    d = np.sqrt(np.einsum("ni,ij,nj->n", ratios - mean, inv, ratios - mean))
    return {
        "front_arms": (pct(arms, LOW_PCT), pct(arms, HIGH_PCT)),
        "front_feet": (max(pct(good["front_feet"], LOW_PCT), MIN_LEG_GAP), pct(good["front_feet"], HIGH_PCT)),
        "front_tilt": (None, pct(good["front_tilt"], HIGH_PCT)),
        "front_turned": (None, pct(good["front_turned"], HIGH_PCT)),
        "side_turned": (None, pct(good["side_turned"], HIGH_PCT)),
        "side_arms": (None, pct(good["side_arms"], HIGH_PCT)),
        "side_lean": (pct(good["side_lean"], LOW_PCT), pct(good["side_lean"], HIGH_PCT)),
        "same_person": (None, pct(d, HIGH_PCT)),
        "side_outline": (None, pct(good["side_outline"], HIGH_PCT)),
        "pair_mean": mean.round(4).tolist(),
        "pair_inv_cov": inv.round(3).tolist(),
    }


def percentiles(good: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """Percentiles (0.5, 1, 5, 50, 95, 99, 99.5) of each scalar feature of the good captures."""
    qs = (0.5, 1, 5, 50, 95, 99, 99.5)
    out = {k: np.nanpercentile(v.ravel(), qs).round(4).tolist() for k, v in good.items() if k != "pair_ratios"}
    out["front_feet_zero_fraction"] = [round(float(np.mean(good["front_feet"] == 0)), 4)]
    return out


def warn_rates(front: np.ndarray, side: np.ndarray) -> dict[str, float]:
    """Fraction of pairs on which each check of :mod:`bodyshape.capture` (its constants) warns."""
    rows = [capture.check_masks(f, s) for f, s in zip(front, side, strict=True)]
    names = [c.name for c in rows[0]]
    fails = np.array([[not c.passed for c in checks] for checks in rows])
    return dict(zip(names, fails.mean(0).round(3).tolist(), strict=True))


def framing(model, n: int, seed: int) -> list[dict]:
    """Photos with the person at each of FRAMING_FRACTIONS of the frame through rembg: the
    silhouette's IoU with the clean render's, and the rembg height."""
    from bodyshape.augment import MaskNoise, apply_mask_noise
    from bodyshape.errors import InputImageError
    from bodyshape.photo import get_segmenter, photo_to_silhouette
    from bodyshape.silhouette import body_pixels, normalize_silhouette
    from demo.synthetic import PHOTO_HW, compose_photo, render_masks

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        a, b = body_pixels(a), body_pixels(b)
        return float((a & b).sum() / (a | b).sum())

    rng = np.random.default_rng(seed)
    seg = get_segmenter()
    shapes = model.sample_shapes(n, seed=seed)
    rows: dict[float, list[float]] = {f: [] for f in FRAMING_FRACTIONS}
    refused = dict.fromkeys(FRAMING_FRACTIONS, 0)
    noise = []
    for shape in shapes:
        for view, mask in zip(("front", "side"), render_masks(shape, height_px=224), strict=True):
            ref = normalize_silhouette(mask)
            noise.append(iou(normalize_silhouette(apply_mask_noise(mask, view, rng, MaskNoise())), ref))
            for frac in FRAMING_FRACTIONS:
                photo = compose_photo(mask, rng, body_frac=frac)
                try:
                    rows[frac].append(iou(photo_to_silhouette(photo, view, seg).silhouette, ref))
                except InputImageError:  # rembg merged the small person with the room: refused
                    refused[frac] += 1
    out = [{"fraction": f, "rembg_px": round(capture.REMBG_INPUT_PX * f), "iou_median": round(float(np.median(v)), 4) if v else None,
            "iou_p10": round(float(np.percentile(v, 10)), 4) if v else None, "refused": refused[f],
            "photos": 2 * n} for f, v in rows.items()]  # fmt: skip
    out.append({"training_mask_noise_iou_median": round(float(np.median(noise)), 4), "photo_hw": list(PHOTO_HW)})
    return out


@contextlib.contextmanager
def using(thresholds: dict):
    """:mod:`bodyshape.capture` with ``thresholds`` (from :func:`pose_thresholds`) instead of its
    constants, so that the report's warn rates are those of the derived numbers."""
    saved = dict(capture.SPECS), capture.PAIR_MEAN, capture.PAIR_INV_COV
    for name, (low, high) in ((k, v) for k, v in thresholds.items() if k in capture.SPECS):
        capture.SPECS[name] = dataclasses.replace(capture.SPECS[name], low=low, high=high)
    capture.PAIR_MEAN, capture.PAIR_INV_COV = tuple(thresholds["pair_mean"]), thresholds["pair_inv_cov"]
    try:
        yield
    finally:
        capture.SPECS.update(saved[0])
        capture.PAIR_MEAN, capture.PAIR_INV_COV = saved[1], saved[2]


def derive(n_good: int = 400, n_sweep: int = 40, n_framing: int = 6, seed: int = 9100,
           sweeps: tuple[str, ...] | None = None) -> dict:  # fmt: skip
    """The whole derivation (about 9 minutes on 2 cores with the defaults); ``sweeps``: only
    these checks' pose sweeps (all of SWEEPS when None)."""
    from bodyshape.body_model import get_body_model

    model = get_body_model()
    shapes = model.sample_shapes(n_good, seed=seed)
    front, side = render(model, shapes, seed + 1)
    good = table(front, side)
    thresholds = pose_thresholds(good)
    with using(thresholds):
        return _report(model, shapes, front, side, good, thresholds, n_sweep, n_framing, seed, sweeps)


def _report(model, shapes, front, side, good, thresholds, n_sweep, n_framing, seed, only=None) -> dict:
    report: dict = {"n_good": len(shapes), "n_sweep": n_sweep, "seed": seed, "thresholds": thresholds,
                    "good_warn_rate": warn_rates(front, side), "good_percentiles": percentiles(good)}  # fmt: skip
    # Different people: each front with the side of the next body.
    report["different_people_warn_rate"] = warn_rates(front, np.roll(side, 1, axis=0))["same_person"]
    sweep_shapes = shapes[:n_sweep]
    sweeps: dict = {}
    # front_turned on the other checks' pose changes: does a tilted camera or a stance read as a turn?
    turned_elsewhere: dict = {}
    for check, (change, values) in SWEEPS.items():
        if only is not None and check not in only:
            continue
        sweeps[check] = {change: {}}
        for v in values:
            f, s = render(model, sweep_shapes, seed + 2, change, v)
            rates = warn_rates(f, s)
            sweeps[check][change][v] = rates[check]
            if change != "yaw":
                turned_elsewhere.setdefault(change, {})[v] = rates["front_turned"]
    report["sweeps"] = sweeps
    report["front_turned_on_other_changes"] = turned_elsewhere
    if n_framing:
        report["framing"] = framing(model, n_framing, seed + 3)
    return report


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n-good", type=int, default=400, help="training-pose bodies (percentiles)")
    p.add_argument("--n-sweep", type=int, default=40, help="bodies per pose change")
    p.add_argument("--n-framing", type=int, default=6, help="bodies photographed at each framing (rembg)")
    p.add_argument("--seed", type=int, default=9100)
    p.add_argument("--sweeps", nargs="+", choices=list(SWEEPS), default=None,
                   help="only these checks' pose sweeps (default: all; e.g. --sweeps front_turned --n-framing 0 "
                        "re-derives one check in about a minute)")
    p.add_argument("--out", type=Path, default=None, help="also write the report as JSON here")


def run(args: argparse.Namespace) -> int:
    report = derive(args.n_good, args.n_sweep, args.n_framing, args.seed, args.sweeps)
    text = json.dumps(report, indent=1, default=lambda o: dataclasses.asdict(o) if dataclasses.is_dataclass(o) else str(o))
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0 if all(math.isfinite(v) for v in report["good_warn_rate"].values()) else 1


def posed_photo_masks(shape: np.ndarray, offsets: dict | None = None, yaw_deg: float = 0.0, roll_deg: float = 0.0,
                      height_px: int = 560) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Front and side masks of one body (like :func:`demo.synthetic.render_masks`) in a chosen
    pose: ``offsets`` view -> ``PoseOffsets``, a whole-body yaw and a camera roll; for bad captures
    in tests (turn them into photos with :func:`demo.synthetic.compose_photo`)."""
    from bodyshape.body_model import capture_pose, get_body_model
    from bodyshape.render import Camera, render_silhouette

    bm = get_body_model()
    camera = Camera(distance=2.6, height=1.2, yaw_deg=yaw_deg, roll_deg=roll_deg)
    out = []
    for view in ("front", "side"):
        pose = capture_pose(view, 1, offsets=(offsets or {}).get(view))
        verts = bm.forward(np.asarray(shape, np.float32).reshape(1, -1), pose).vertices[0]
        out.append(render_silhouette(verts, bm.faces, view, camera, height_px))
    return out[0], out[1]
