"""Body measurements on an Anny mesh in the rest A-pose (metres in, metres out).

Primitives (:func:`section_points`, :func:`convex_perimeter`, :func:`girth`) work on any
triangle mesh. :class:`Measurer` applies them to Anny with these definitions
(Z up, -Y front; "torso faces" = faces skinned mainly to the root, pelvis and spine bones;
arms, legs, neck and head faces are excluded from a torso girth, as a tape would):

=============  ===============================================================================
height         top of the head to the soles (z extent).
chest          bust/chest girth: the largest horizontal torso girth between 50% and 85% of the
               way from the waist plane up to the shoulder joints (ISO 8559: fullest part).
waist          horizontal torso girth at the mean height of Anny's waist-loop vertices
               (the loop ``anny.anthropometry`` measures; see docs/decisions.md).
hip            the largest horizontal girth of torso + legs between the crotch and the waist
               plane (over the buttocks; arms and hands excluded).
neck           horizontal girth of the neck faces at the height of the mid-neck joint.
thigh          the largest horizontal girth of the left leg between 1 and 8 cm below the crotch
               (offsets for a 1.7 m body, scaled with height).
upper_arm      girth of the left upper arm in the plane perpendicular to the upper-arm bone,
               at the middle of the bone.
inseam         crotch height above the floor (lowest mid-line point above the knees).
shoulder       shoulder width (bideltoid): width of the body's horizontal cross-section at the
               height of the shoulder joints, across the deltoids.
arm_length     shoulder joint -> elbow joint -> wrist joint, along the bones.
=============  ===============================================================================

Girths are perimeters of the convex hull of the cross-section: a tape measure bridges
concavities (navel, between the buttocks) in the same way.

The joints are read off the vertices with a linear regressor fitted once to Anny's own
joints, so measurements need only the vertices (as served by Triton, scaled to height).
"""

from __future__ import annotations

from functools import cached_property

import cv2
import numpy as np

from bodyshape.body_model import BodyModel, get_body_model

MEASUREMENT_NAMES: tuple[str, ...] = (
    "height",
    "chest",
    "waist",
    "hip",
    "neck",
    "thigh",
    "upper_arm",
    "inseam",
    "shoulder",
    "arm_length",
)
GIRTHS = ("chest", "waist", "hip", "neck", "thigh", "upper_arm")


# ----------------------------------------------------------------------------- primitives
def section_points(
    vertices: np.ndarray, faces: np.ndarray, origin: np.ndarray, normal: np.ndarray
) -> np.ndarray:
    """Points where the mesh edges of ``faces`` cross the plane (origin, normal). (N, 3)."""
    n = np.asarray(normal, np.float64)
    n = n / np.linalg.norm(n)
    tri = vertices[faces]  # (F, 3, 3)
    d = (tri - origin) @ n  # (F, 3) signed distances of the corners
    pts = []
    for a, b in ((0, 1), (1, 2), (2, 0)):
        da, db = d[:, a], d[:, b]
        cross = (da > 0) != (db > 0)
        if not cross.any():
            continue
        pa, pb, da, db = tri[cross, a], tri[cross, b], da[cross], db[cross]
        pts.append(pa + (da / (da - db))[:, None] * (pb - pa))
    return np.concatenate(pts) if pts else np.zeros((0, 3))


def convex_perimeter(points_2d: np.ndarray) -> float:
    """Perimeter of the convex hull of 2-D points (0 for fewer than 3)."""
    if len(points_2d) < 3:
        return 0.0
    hull = cv2.convexHull(np.asarray(points_2d, np.float32).reshape(-1, 1, 2)).reshape(-1, 2)
    return float(np.linalg.norm(hull.astype(np.float64) - np.roll(hull, 1, axis=0), axis=1).sum())


def _plane_basis(normal: np.ndarray) -> np.ndarray:
    n = np.asarray(normal, np.float64)
    n = n / np.linalg.norm(n)
    helper = np.array([1.0, 0, 0]) if abs(n[0]) < 0.9 else np.array([0, 1.0, 0])
    u = np.cross(n, helper)
    u /= np.linalg.norm(u)
    return np.stack([u, np.cross(n, u)])  # (2, 3)


def girth(vertices: np.ndarray, faces: np.ndarray, origin: np.ndarray, normal: np.ndarray) -> float:
    """Tape-measure girth: convex-hull perimeter of the mesh's cross-section by a plane."""
    pts = section_points(vertices, faces, origin, normal)
    return convex_perimeter((pts - origin) @ _plane_basis(normal).T)


_Z = np.array([0.0, 0.0, 1.0])


def horizontal_girth(vertices: np.ndarray, faces: np.ndarray, z: float) -> float:
    return girth(vertices, faces, np.array([0.0, 0.0, z]), _Z)


def horizontal_girths(vertices: np.ndarray, faces: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Girths of horizontal sections at several heights at once (vectorised over levels)."""
    levels = np.asarray(levels, np.float64)
    tri = vertices[faces]  # (F, 3, 3)
    d = tri[:, :, 2, None] - levels[None, None, :]  # (F, 3, L)
    pts, lvl = [], []
    for a, b in ((0, 1), (1, 2), (2, 0)):
        da, db = d[:, a], d[:, b]
        f_idx, l_idx = np.nonzero((da > 0) != (db > 0))
        if f_idx.size == 0:
            continue
        t = (da[f_idx, l_idx] / (da[f_idx, l_idx] - db[f_idx, l_idx]))[:, None]
        pa, pb = tri[f_idx, a, :2], tri[f_idx, b, :2]
        pts.append(pa + t * (pb - pa))
        lvl.append(l_idx)
    out = np.zeros(len(levels))
    if not pts:
        return out
    p, lv = np.concatenate(pts), np.concatenate(lvl)
    order = np.argsort(lv, kind="stable")
    p, lv = p[order], lv[order]
    bounds = np.searchsorted(lv, np.arange(len(levels) + 1))
    for k in range(len(levels)):
        out[k] = convex_perimeter(p[bounds[k] : bounds[k + 1]])
    return out


# ----------------------------------------------------------------------------- Anny
_ARM = ("clavicle", "shoulder01", "upperarm", "lowerarm", "wrist", "finger", "metacarpal")
_LEG = ("upperleg", "lowerleg", "foot", "toe")
_TORSO = ("root", "pelvis", "spine")
_NECK = ("neck",)
_JOINTS = ("upperarm01.L", "lowerarm01.L", "wrist.L", "upperarm01.R", "neck02", "lowerleg01.L")


def _is(label: str, prefixes: tuple[str, ...]) -> bool:
    return label.startswith(prefixes)


class Measurer:
    """Measures Anny meshes (rest A-pose, any uniform scale and translation)."""

    def __init__(self, model: BodyModel | None = None) -> None:
        self.model = model or get_body_model()
        faces = self.model.faces
        labels = self.model.bone_labels
        bone = self.model.dominant_bone  # (V,)
        vlabel = np.array([labels[b] for b in bone])

        def vmask(pred) -> np.ndarray:
            return np.array([pred(lbl) for lbl in vlabel])

        arm = vmask(lambda s: _is(s, _ARM))
        leg_l = vmask(lambda s: _is(s, _LEG) and s.endswith(".L"))
        leg = vmask(lambda s: _is(s, _LEG))
        torso = vmask(lambda s: _is(s, _TORSO))
        neck = vmask(lambda s: _is(s, _NECK))
        uarm_l = vmask(lambda s: s.startswith("upperarm") and s.endswith(".L"))

        def fmask(vm: np.ndarray) -> np.ndarray:
            return faces[vm[faces].sum(1) >= 2]  # a face belongs where 2 of 3 vertices do

        self.faces_torso = fmask(torso)
        self.faces_lower = fmask(torso | leg)
        self.faces_leg_l = fmask(leg_l)
        self.faces_neck = fmask(neck)
        self.faces_uarm_l = fmask(uarm_l)
        self.not_arm = ~arm
        from anny.anthropometry import BASE_MESH_WAIST_VERTICES

        base = self.model.anny.base_mesh_vertex_indices.cpu().numpy().tolist()
        self.waist_loop = np.array([base.index(i) for i in BASE_MESH_WAIST_VERTICES])

    @cached_property
    def joint_regressor(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per joint: 64 nearby vertex indices and least-squares weights reproducing Anny's
        rest joint position from them over a sample of bodies."""
        import torch

        m = self.model
        shapes = m.sample_shapes(96, seed=12345)
        with torch.no_grad():
            out = m.anny(
                phenotype_kwargs=torch.as_tensor(shapes[:, :6], dtype=m.anny.dtype),
                local_changes_kwargs=torch.as_tensor(shapes[:, 6:], dtype=m.anny.dtype),
            )
        verts = out["rest_vertices"].cpu().numpy()  # (B, V, 3)
        heads = out["rest_bone_heads"].cpu().numpy()  # (B, J, 3)
        reg = {}
        for name in _JOINTS:
            j = m.bone_labels.index(name)
            d = np.linalg.norm(verts[0] - heads[0, j], axis=1)
            idx = np.argsort(d)[:64]
            # Solve sum_k w_k v_k = joint for all bodies and all 3 coordinates, sum w = 1.
            a = verts[:, idx, :].transpose(0, 2, 1).reshape(-1, len(idx))
            b = heads[:, j, :].reshape(-1)
            a = np.vstack([a, 10 * np.ones((1, len(idx)))])
            b = np.concatenate([b, [10.0]])
            w, *_ = np.linalg.lstsq(a, b, rcond=None)
            reg[name] = (idx, w)
        return reg

    def joints(self, v: np.ndarray) -> dict[str, np.ndarray]:
        return {k: w @ v[idx] for k, (idx, w) in self.joint_regressor.items()}

    def __call__(self, vertices: np.ndarray) -> dict[str, float]:
        """Measurements (metres) of one mesh (V, 3) in the rest A-pose."""
        v = np.asarray(vertices, np.float64)
        j = self.joints(v)
        z = v[:, 2]
        floor, top = z.min(), z.max()
        u = (top - floor) / 1.7  # offsets below are for a 1.7 m body, scaled to this one
        knee_z = j["lowerleg01.L"][2]
        mid_x = 0.5 * (j["upperarm01.L"][0] + j["upperarm01.R"][0])
        mid = (np.abs(v[:, 0] - mid_x) < 0.012 * u) & (z > knee_z) & self.not_arm
        crotch_z = z[mid].min()
        waist_z = float(v[self.waist_loop, 2].mean())
        shoulder_z = 0.5 * (j["upperarm01.L"][2] + j["upperarm01.R"][2])

        def max_girth(faces: np.ndarray, z0: float, z1: float, n: int = 8) -> float:
            fz = z[faces]
            band = faces[(fz.max(1) >= z0) & (fz.min(1) <= z1)]  # slice only faces in range
            return float(horizontal_girths(v, band, np.linspace(z0, z1, n)).max())

        chest = max_girth(
            self.faces_torso, waist_z + 0.50 * (shoulder_z - waist_z), waist_z + 0.85 * (shoulder_z - waist_z)
        )
        hip = max_girth(self.faces_lower, crotch_z + 0.01 * u, waist_z - 0.01 * u, 10)
        thigh = max_girth(self.faces_leg_l, crotch_z - 0.08 * u, crotch_z - 0.01 * u, 5)
        ua0, el = j["upperarm01.L"], j["lowerarm01.L"]
        upper_arm = girth(v, self.faces_uarm_l, 0.5 * (ua0 + el), el - ua0)
        return {
            "height": float(top - floor),
            "chest": chest,
            "waist": horizontal_girth(v, self.faces_torso, waist_z),
            "hip": hip,
            "neck": horizontal_girth(v, self.faces_neck, float(j["neck02"][2])),
            "thigh": thigh,
            "upper_arm": upper_arm,
            "inseam": float(crotch_z - floor),
            "shoulder": float(np.ptp(section_points(v, self.model.faces, np.array([0, 0, shoulder_z]), _Z)[:, 0])),
            "arm_length": float(np.linalg.norm(el - ua0) + np.linalg.norm(j["wrist.L"] - el)),
        }

    def batch(self, vertices: np.ndarray) -> np.ndarray:
        """(B, V, 3) -> (B, len(MEASUREMENT_NAMES)) float32, metres."""
        return np.array(
            [[m[k] for k in MEASUREMENT_NAMES] for m in map(self, vertices)], np.float32
        ).reshape(len(vertices), len(MEASUREMENT_NAMES))


_MEASURER: Measurer | None = None


def get_measurer() -> Measurer:
    global _MEASURER
    if _MEASURER is None:
        _MEASURER = Measurer()
    return _MEASURER


def measure(vertices: np.ndarray) -> dict[str, float]:
    """Measurements (metres) of one Anny mesh (V, 3) in the rest A-pose."""
    return get_measurer()(vertices)
