"""Outline refinement (an experiment, NOT in the product path): fit the predicted shape to the
silhouettes' width and depth profiles.

Measured by ``python -m training.outline_fit`` (docs/evaluation.md, ablation): on ideal masks
(the capture pose exactly, the camera the fit assumes) it cuts the girth errors by half; on
masks made like the training data (camera distance, height, tilt and yaw drawn at random,
pose jitter, mask noise) it makes them two to three times worse, because the per-level widths
move more with the unknown camera and pose than with the body. Kept for the next attempt
(joint camera/pose estimation, a learned profile model), not used by the page.

The network reads 128 x 96 silhouettes (a body 112 px tall: one pixel is about 15 mm). The
photo mask it came from is several times finer. The refinement reads the body's width (front
view) and depth (side view) at a few dozen height levels of the fine mask, renders the
predicted body the same way, and moves the shape parameters (Gauss-Newton, a prior that keeps
them near the network's answer) until the two profiles agree.

A profile level is the run of body pixels through the body's centre column at that height,
as a fraction of the body's height in the image: arms held away from the torso are separate
runs and drop out, and the typed height still fixes the size. Mask and model go through the
same :func:`profile`, so what the arms or the legs do at a level is the same on both sides.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from bodyshape.body_model import N_PHENOTYPES, N_SHAPE, BodyModel, PoseOffsets, capture_pose, get_body_model
from bodyshape.render import Camera, project
from bodyshape.silhouette import bounding_box

VIEWS = ("front", "side")


@dataclass(frozen=True)
class RefineConfig:
    """Levels are fractions of the body's image height from the top of the head."""

    levels: dict[str, tuple[float, float, int]] = field(
        default_factory=lambda: {"front": (0.28, 0.52, 25), "side": (0.16, 0.53, 38)}
    )
    camera: Camera = Camera(distance=2.6, height=1.2)  # the capture guide's phone position
    render_px: int = 448  # body height of the model's render, pixels
    step: float = 0.05  # finite-difference step of each shape parameter
    iterations: int = 2
    prior_sd: float = 0.15  # how far (in parameter units) the fit may move from the network
    residual_sd: float = 0.004  # profile noise, fractions of body height (about 7 mm)
    huber: float = 2.0  # residuals beyond this many residual_sd count linearly (arms touching)
    gap: float = 0.02  # a gap between projected vertices wider than this (body heights) splits runs
    pose_step_deg: float = 3.0
    pose_sd_deg: float = 8.0  # prior on each fitted pose offset
    pose_limit_deg: float = 25.0
    camera_sd_deg: float = 6.0  # prior on the fitted camera pitch and yaw offsets
    pitch_candidates: tuple[float, ...] = (-8.0, 0.0, 8.0)  # start tilts tried (and upright), from aiming


def level_rows(top: int, bottom: int, levels: tuple[float, float, int]) -> np.ndarray:
    lo, hi, n = levels
    return np.round(top + np.linspace(lo, hi, n) * (bottom - top)).astype(int)


def profile(mask: np.ndarray, levels: tuple[float, float, int], extent: tuple[int, int] | None = None) -> np.ndarray:
    """(K,) width of the run through the body's centre column at each level, in body heights.

    ``mask``: (H, W) body coverage (bool, 0/1, 0/255 or anti-aliased 0..255: partial pixels
    count partly). NaN where the centre column is background (between the legs). ``extent``:
    the body's (top, bottom) rows when the mask is not drawn whole (see :func:`render_band`).
    """
    cover = mask.astype(np.float32)
    cover /= max(float(cover.max()), 1e-9)
    top, bottom = extent if extent is not None else bounding_box(cover > 0.5)[:2]
    height = bottom - top
    torso = cover[top + int(0.30 * height) : top + int(0.45 * height)]
    cols = np.arange(cover.shape[1], dtype=np.float32)
    cx = int(round(float((torso.sum(0) * cols).sum() / max(torso.sum(), 1e-9))))
    out = np.full(levels[2], np.nan)
    for k, y in enumerate(level_rows(top, bottom, levels)):
        row = cover[y]
        if row[cx] < 0.5:
            continue
        empty = row <= 0
        left = np.flatnonzero(empty[:cx])
        right = np.flatnonzero(empty[cx:])
        a = left[-1] + 1 if left.size else 0
        b = cx + right[0] if right.size else len(row)
        out[k] = row[a:b].sum() / height
    return out


def render_band(points: np.ndarray, faces: np.ndarray, height_px: int, rows: np.ndarray, margin_px: int = 8) -> np.ndarray:
    """:func:`bodyshape.render.rasterize`'s silhouette, drawn only near the image rows ``rows``.

    The same pixel grid and fill rule as the masks the network trains on (so no edge bias
    between mask and model); only the faces that reach the profile's levels are filled, which
    is most of the cost saved. Rows are of the full image: top of the body at ``margin_px``.
    """
    xy = points[:, :2]
    lo, hi = xy.min(0), xy.max(0)
    scale = (height_px - 1) / max(hi[1] - lo[1], 1e-9)
    px = (xy - lo) * scale + margin_px
    w = int(np.ceil((hi[0] - lo[0]) * scale)) + 2 * margin_px + 1
    tri = px[faces]
    ys = tri[..., 1]
    near = (ys.max(1) >= rows.min() - 2) & (ys.min(1) <= rows.max() + 2)
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    cross = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    nearest = int(np.argmin(points[faces, 2].mean(1)))
    facing = (cross * np.sign(cross[nearest]) > 0) & near
    shift = 3
    img = np.zeros((height_px + 2 * margin_px, w), np.uint8)
    cv2.fillPoly(img, list(np.round(tri[facing] * (1 << shift)).astype(np.int32)), 255, lineType=cv2.LINE_8, shift=shift)
    return cv2.morphologyEx(img, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))


#: Pose offsets (degrees, :class:`~bodyshape.body_model.PoseOffsets` fields) fitted with the
#: shape, per view: the arms decide which levels of the outline are torso, the stance shapes
#: the hips, a lean turns the profile.
POSE_PARAMS = {"front": ("arm_abduction", "leg_spread"), "side": ("arm_swing", "elbow", "torso_lean")}


class Refiner:
    """Fits shape parameters (and the pose of each photo) to observed masks; see the module docstring.

    Residuals come from a real render of the current body, drawn like the training masks.
    The Jacobian comes from a smooth stand-in: at each level, the projected vertices in a
    thin band, split into runs where they leave a gap; the run through the body's centre is
    differenced over one probe per parameter (no rendering). Shape probes are cheap: the rest
    surface is linear in the blendshapes, and the current skinning carries a change of it into
    the pose. Pose probes are one batched forward pass per view.
    """

    def __init__(self, model: BodyModel | None = None, config: RefineConfig = RefineConfig()) -> None:
        self.model = model or get_body_model()
        self.cfg = config

    def _pose(self, view: str, angles: np.ndarray) -> dict:
        """(B, P) pose angles of ``view`` -> Anny pose deltas for B bodies."""
        offsets = PoseOffsets(**{name: angles[:, j] for j, name in enumerate(POSE_PARAMS[view])})
        return capture_pose(view, len(angles), offsets=offsets)

    def _render_profile(self, verts: np.ndarray, view: str, camera: Camera, height_px: int) -> np.ndarray:
        """Profile of the body drawn like a mask of ``height_px`` body pixels (the rasteriser's
        edge rule adds about a pixel to every run: drawn at the mask's own size, it cancels)."""
        margin = 8
        extent = (margin, margin + height_px)
        rows = np.r_[level_rows(*extent, self.cfg.levels[view]), level_rows(*extent, (0.30, 0.45, 2))]
        img = render_band(project(verts, view, camera), self.model.faces, height_px, rows, margin)
        return profile(img, self.cfg.levels[view], extent)

    def _proxy_profiles(self, pts: np.ndarray, view: str) -> np.ndarray:
        """(B, V, 2) projected probes of one body -> (B, K) widths of the vertex run through the centre."""
        ys = pts[..., 1]
        top, bottom = ys.min(1, keepdims=True), ys.max(1, keepdims=True)
        h = bottom - top
        x, y = pts[..., 0] / h, (ys - top) / h
        lo, hi, n = self.cfg.levels[view]
        band = 0.5 * (hi - lo) / max(n - 1, 1)
        torso = (y[0] > 0.30) & (y[0] < 0.45)
        cx = float(np.median(x[0, torso]))
        out = np.full((len(pts), n), np.nan)
        for k, level in enumerate(np.linspace(lo, hi, n)):
            idx = np.flatnonzero(np.abs(y[0] - level) < band)
            if idx.size < 4:
                continue
            order = idx[np.argsort(x[0, idx])]
            cuts = np.flatnonzero(np.diff(x[0, order]) > self.cfg.gap) + 1
            run = next((r for r in np.split(order, cuts) if x[0, r].min() <= cx <= x[0, r].max()), None)
            if run is None or run.size < 4:
                continue
            xr = x[:, run]
            out[:, k] = xr.max(1) - xr.min(1)
        return out

    def _camera(self, view_params: np.ndarray, body_height: float) -> Camera:
        """The photo's camera: the configured position, aimed at the body's middle, plus the
        fitted pitch and yaw offsets (degrees)."""
        c = self.cfg.camera
        aim = math.degrees(math.atan2(c.height - 0.5 * body_height, c.distance))
        return dataclasses.replace(c, pitch_deg=aim + float(view_params[0]), yaw_deg=float(view_params[1]))

    def refine(self, shape: np.ndarray, masks: dict[str, np.ndarray]) -> tuple[np.ndarray, dict]:
        """One body: shape (N_SHAPE,) and its masks {view: (H, W)} -> refined shape, diagnostics.

        Parameters fitted: the shape, then per view its pose offsets (:data:`POSE_PARAMS`)
        and the camera's pitch and yaw.
        """
        import torch

        cfg = self.cfg
        target, px = [], {}
        for v in VIEWS:
            m = np.asarray(masks[v])
            top, bottom, _, _ = bounding_box(m > (127 if m.dtype == np.uint8 and m.max() > 1 else 0))
            px[v] = int(np.clip(bottom - top, 160, cfg.render_px))
            target.append(profile(m, cfg.levels[v]))
        target = np.concatenate(target)
        # Parameter vector: shape, then per view [pose offsets..., camera pitch, camera yaw].
        blocks, offset = {}, N_SHAPE
        for v in VIEWS:
            blocks[v] = (offset, len(POSE_PARAMS[v]))
            offset += len(POSE_PARAMS[v]) + 2
        n_par = offset
        x = np.r_[np.asarray(shape, np.float64), np.zeros(n_par - N_SHAPE)]
        # The camera's tilt decides which body level each image row shows. Start each view
        # from the best of a few tilts (a phone held upright, or aimed at the body's middle).
        for view in VIEWS:
            o, p = blocks[view]
            verts = self.model.forward(x[None, :N_SHAPE].astype(np.float32), self._pose(view, np.zeros((1, p)))).vertices[0]
            body_h = float(verts[:, 2].max() - verts[:, 2].min())
            k0 = sum(cfg.levels[w][2] for w in VIEWS[: VIEWS.index(view)])
            want = target[k0 : k0 + cfg.levels[view][2]]

            aim = math.degrees(math.atan2(cfg.camera.height - 0.5 * body_h, cfg.camera.distance))
            misfits = []
            for pitch in cfg.pitch_candidates + (-aim,):
                d = want - self._render_profile(verts, view, self._camera(np.array([pitch, 0.0]), body_h), px[view])
                misfits.append((float(np.nanmean(np.abs(d))) if np.isfinite(d).any() else np.inf, pitch))
            x[o + p] = min(misfits)[1]
        x0 = x.copy()
        lo = np.r_[np.zeros(N_PHENOTYPES), -np.ones(N_SHAPE - N_PHENOTYPES), np.full(n_par - N_SHAPE, -cfg.pose_limit_deg)]
        hi = np.r_[np.ones(N_SHAPE), np.full(n_par - N_SHAPE, cfg.pose_limit_deg)]
        prior = np.full(n_par, cfg.pose_sd_deg)
        prior[:N_SHAPE] = cfg.prior_sd
        for o, p in blocks.values():
            prior[o + p : o + p + 2] = cfg.camera_sd_deg
        info: dict = {}
        for _ in range(cfg.iterations):
            s = x[:N_SHAPE]
            steps = np.where(s + cfg.step <= 1.0, cfg.step, -cfg.step)
            probes = np.repeat(s[None], 1 + N_SHAPE, 0)
            probes[1 + np.arange(N_SHAPE), np.arange(N_SHAPE)] += steps
            # Shape probes are cheap: the rest surface is linear in the blendshapes, and the
            # current skinning carries a change of it into the pose.
            rest_probes = self.model.rest_vertices_torch(torch.from_numpy(probes)).numpy()
            delta = rest_probes[1:] - rest_probes[:1]  # (S, V, 3)
            rendered, jac = [], []
            for view in VIEWS:
                o, p = blocks[view]
                angles = np.repeat(x[None, o : o + p], 1 + p, 0)
                angles[1 + np.arange(p), np.arange(p)] += cfg.pose_step_deg
                posed, rot = self.model.posed_linearisation(
                    np.repeat(s[None], 1 + p, 0).astype(np.float32), self._pose(view, angles)
                )
                base = posed[0]
                body_h = float(base[:, 2].max() - base[:, 2].min())
                cam = self._camera(x[o + p : o + p + 2], body_h)
                cams = [self._camera(x[o + p : o + p + 2] + d, body_h) for d in np.eye(2) * cfg.pose_step_deg]
                shape_probes = base[None] + np.einsum("vij,bvj->bvi", rot[0], delta)
                pts = [project(v3, view, cam)[:, :2] for v3 in np.concatenate([base[None], shape_probes, posed[1:]])]
                pts += [project(base, view, c)[:, :2] for c in cams]
                prox = self._proxy_profiles(np.stack(pts), view)
                rendered.append(self._render_profile(base, view, cam, px[view]))
                block = np.zeros((n_par, prox.shape[1]))
                block[:N_SHAPE] = (prox[1 : 1 + N_SHAPE] - prox[0]) / steps[:, None]
                block[o : o + p + 2] = (prox[1 + N_SHAPE :] - prox[0]) / cfg.pose_step_deg
                jac.append(block)
            jac = np.concatenate(jac, axis=1)
            r = target - np.concatenate(rendered)
            ok = np.isfinite(r) & np.isfinite(jac).all(0)
            rms = float(np.sqrt(np.mean(r[ok] ** 2)))
            info.setdefault("residual_before", rms)
            rr, jj = r[ok] / cfg.residual_sd, jac[:, ok].T / cfg.residual_sd
            # Huber weights: a level where the arm touches the torso in the photo (not in the
            # model) counts linearly, not quadratically.
            wgt = np.minimum(1.0, cfg.huber / np.maximum(np.abs(rr), 1e-9))
            a = jj.T @ (wgt[:, None] * jj) + np.diag(1.0 / prior**2)
            b = jj.T @ (wgt * rr) - (x - x0) / prior**2
            x = np.clip(x + np.linalg.solve(a, b), lo, hi)
        info["levels_used"] = int(ok.sum())
        info["params"] = {f"{v}.{name}": round(float(x[o + j]), 2) for v, (o, p) in blocks.items()
                          for j, name in enumerate(POSE_PARAMS[v] + ("pitch", "yaw"))}
        return x[:N_SHAPE].astype(np.float32), info


# ----------------------------------------------------------------------------- experiment
def _experiment(kind: str, n: int, seed: int = 5002) -> dict[str, np.ndarray]:
    """Girth errors (chest, waist, hip; mm) of the network and of the refined fit on ``n`` bodies.

    ``ideal``: the synthetic photos' masks (demo.synthetic: capture pose, camera 2.6 m at
    1.2 m, upright); ``clean``: the training generator's cameras and pose jitter, no mask
    noise; ``noisy``: the training generator as it is.
    """
    from bodyshape.measurements import MEASUREMENT_NAMES, get_measurer
    from bodyshape.reconstruct import LocalPredictor, mesh_from_shape
    from bodyshape.silhouette import normalize_silhouette

    model, measurer = get_body_model(), get_measurer()
    shapes = model.sample_shapes(n, seed=seed)
    rest = model.forward(shapes).rest_vertices
    if kind == "ideal":
        from demo.synthetic import render_masks

        fine = [render_masks(s) for s in shapes]
        fronts, sides = [f for f, _ in fine], [s for _, s in fine]
    else:
        import bodyshape.silhouette as silhouette_module
        from bodyshape.augment import NO_NOISE
        from training.config import DataConfig
        from training.generate import render_batch

        cfg = DataConfig() if kind == "noisy" else dataclasses.replace(DataConfig(), noise=NO_NOISE)
        captured: list[np.ndarray] = []
        original = silhouette_module.normalize_silhouette

        def keep(mask: np.ndarray, *a, **k) -> np.ndarray:  # the generator's masks before normalising
            captured.append(mask.copy())
            return original(mask, *a, **k)

        silhouette_module.normalize_silhouette = keep
        try:
            _, _, rest = render_batch(model, shapes, cfg, np.random.default_rng(seed))
        finally:
            silhouette_module.normalize_silhouette = original
        fronts, sides = captured[:n], captured[n:]
    truth = measurer.batch(rest)
    height = truth[:, MEASUREMENT_NAMES.index("height")]
    net = LocalPredictor().predict_shape(
        np.stack([normalize_silhouette(m) for m in fronts]), np.stack([normalize_silhouette(m) for m in sides]), height
    )
    refiner = Refiner(model)
    fitted = np.stack([refiner.refine(net[i], {"front": fronts[i], "side": sides[i]})[0] for i in range(n)])
    cols = [MEASUREMENT_NAMES.index(g) for g in ("chest", "waist", "hip")]
    return {name: (measurer.batch(mesh_from_shape(s, height)) - truth)[:, cols] * 1000 for name, s in (("network", net), ("refined", fitted))}


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=24)
    args = p.parse_args()
    print("| masks | n | network chest / waist / hip MAE (bias), mm | refined |")
    print("|---|---|---|---|")
    for kind in ("ideal", "clean", "noisy"):
        e = _experiment(kind, args.n)
        cells = [" / ".join(f"{np.abs(v[:, j]).mean():.1f} ({v[:, j].mean():+.1f})" for j in range(3)) for v in e.values()]
        print(f"| {kind} | {args.n} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
