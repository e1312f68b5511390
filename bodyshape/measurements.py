"""Body measurements on an Anny mesh in the rest A-pose, defined as ISO 8559-1 defines them.

Metres in, metres out; Z up, -Y front, +X the body's left. Primitives (:func:`section_points`,
:func:`convex_perimeter`, :func:`girth`, :func:`tape_length`) work on any triangle mesh;
:class:`Measurer` finds the landmarks on Anny and applies them.

How the tape runs. **Girths** are the perimeter of the convex hull of a plane section of
the mesh: a tape bridges hollows (navel, between the buttocks, the spine) the same way.
**Surface lengths** are "tape polylines": the body's outline seen along the direction the
tape does not bend in (points projected onto the plane of the tape), convex hull, and the
length of the hull chain between the two landmarks on the outer side: the tape lies on every
bulge between them and bridges every hollow. **Heights and breadths** are straight.
ISO 8559-1:2017 terms are given below; its clause numbers are not, as the standard's own text
was not available to check them. "Torso faces" are faces skinned mainly to Anny's root,
pelvis and spine bones (arms, legs, neck and head excluded, as a tape excludes them).
Landmarks are vertices of Anny's fixed topology where the landmark is a skinning boundary
(neck base), else found on each mesh as said; joints come from a linear regressor fitted
once to Anny's rest joints, so only vertices are needed (as served by Triton).

=================  ==========================  ============================================================
name               ISO 8559-1 term             definition on the mesh
=================  ==========================  ============================================================
height             body height (stature)       top of the head to the soles (z extent).
chest              bust girth (women) /        horizontal torso girth at the level of the bust points (the
                   chest girth (men)           nipples): two vertices of Anny's fixed topology, the ones that
                                               are the most forward point of the chest on its women (found
                                               once, :func:`find_bust_points`); on every body they sit where
                                               the nipples are, so the level moves smoothly with the shape.
waist              waist girth                 natural waist: the smallest horizontal torso girth between
                                               the iliac crest and the lowest rib (22% and 65% of the way
                                               from Anny's spine04 to spine02 joint, placed by ANSUR II's
                                               iliocristale and tenth-rib heights). Not the navel.
hip                hip girth                   horizontal girth (torso + legs) at the level of the greatest
                                               buttock prominence (the most posterior point between the
                                               crotch and the waist).
neck               neck base girth             girth in the plane through the cervicale (C7) and the jugular
                                               notch, level from side to side. Both landmarks are the back and
                                               front mid-line vertices of Anny's neck/torso skinning boundary.
thigh              thigh girth                 the largest horizontal girth of the left thigh between 1 and
                                               8 cm below the crotch (just below the gluteal fold).
upper_arm          upper arm girth             left arm, perpendicular to the upper-arm bone, midway
                                               between the acromion and the olecranon; relaxed arm.
inseam             inside leg length           crotch height: floor to the lowest mid-line point of the
                   (crotch height)             trunk above the knees, vertical.
shoulder           shoulder width as ANSUR's   biacromial breadth: straight distance acromion to acromion.
                   biacromial breadth          Acromion = the highest skin point 1.5 cm (for a 1.7 m body)
                                               lateral of the shoulder joint centre, near its depth (the top
                                               of the shoulder above the humeral head).
arm_length         arm length                  tape polyline acromion -> olecranon (the outer point of the
                                               elbow bend) -> ulnar styloid (the wrist point on the same,
                                               posterior side): left arm, rest pose (elbow slightly bent).
underbust          underbust girth             horizontal torso girth at the breast fold: in the 2-12 cm below
                                               the bust point and at least 2 cm above the natural waist, the
                                               highest level where the front of the chest under the bust point
                                               is (within 2 mm) farthest back. Given for everyone (men: the
                                               chest just below the pectorals).
wrist              wrist girth                 left forearm, perpendicular to the forearm bone, 1 cm (for a
                                               1.7 m body) above the wrist joint: over the ulnar styloid.
calf               calf girth                  the largest horizontal girth of the left lower leg between 30%
                                               and 90% of the way from the ankle joint to the knee joint.
outside_leg        outside leg length          tape polyline from the natural waist at the side over the hip
                                               (the widest point below the waist), then vertically to the floor.
back_waist_length  cervicale to waist length   tape polyline from the cervicale down the back mid-line to the
                   (back waist length)         natural-waist level, bridging the hollow of the lower back.
across_back        back width                  across the back between the posterior armpit folds, 2 cm (for a
                                               1.7 m body) above the armpit: the back half of the convex hull of
                                               the torso section, between its ends at the arm/torso boundary.
=================  ==========================  ============================================================

Offsets quoted "for a 1.7 m body" scale with the body's height. :data:`MEASUREMENTS` holds
per measurement its label, ISO term and how to measure it yourself, for the page, CSV and CLI.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from bodyshape.body_model import N_PHENOTYPES, BodyModel, get_body_model
from bodyshape.shared import Shared


@dataclass(frozen=True)
class Measurement:
    """One measurement: key, short label, ISO 8559-1 term, how a person measures it with a tape."""

    name: str
    label: str
    iso_term: str
    how_to_measure: str


#: name | label | ISO 8559-1 term | how to measure it yourself (one line per measurement).
_TABLE = """
height | Height | body height (stature) | Barefoot, back to a wall, heels together: floor to the top of the head.
chest | Chest / bust | chest girth (men), bust girth (women) | Tape level under the armpits, over the nipples (bust points); breathe out normally.
waist | Waist | waist girth | Tape level round the narrowest part between the lowest rib and the top of the hip bone.
hip | Hip | hip girth | Feet together, tape level round the fullest part of the buttocks.
neck | Neck (base) | neck base girth | Tape round the base of the neck over the bony bump at the back (C7) and the notch above the breastbone.
thigh | Thigh | thigh girth | Standing, tape level round the top of the thigh just below the buttock fold.
upper_arm | Upper arm | upper arm girth | Arm relaxed at the side: round the arm midway between the shoulder tip and the elbow.
inseam | Inside leg | inside leg length (crotch height) | Barefoot: floor straight up to the crotch (a book pushed up between the legs helps).
shoulder | Shoulder width | shoulder width (biacromial breadth, straight) | Straight across the back from one shoulder tip (bony point at the end of the shoulder) to the other, e.g. with a ruler held level; not over the curve.
arm_length | Arm length | arm length | Arm hanging, elbow slightly bent: from the shoulder tip over the elbow point to the wrist bone on the little-finger side.
underbust | Underbust | underbust girth | Tape level round the ribcage directly under the breasts (the bra band line); men: just below the chest muscles.
wrist | Wrist | wrist girth | Round the wrist over the bony bump on the little-finger side.
calf | Calf | calf girth | Standing, tape level round the fullest part of the calf.
outside_leg | Outside leg | outside leg length | From the waist at the side, over the hip, then straight down the outside of the leg to the floor.
back_waist_length | Back waist length | cervicale to waist length (back) | From the bony bump at the base of the back of the neck (C7) down the spine to the waist level.
across_back | Across back | back width | Arms hanging: across the shoulder blades from one armpit crease to the other.
"""
MEASUREMENTS: tuple[Measurement, ...] = tuple(
    Measurement(*(cell.strip() for cell in line.split(" | "))) for line in _TABLE.strip().splitlines()
)
BY_NAME: dict[str, Measurement] = {m.name: m for m in MEASUREMENTS}
#: Keys in a fixed order (stored as columns of the training data: append, never reorder).
MEASUREMENT_NAMES: tuple[str, ...] = tuple(m.name for m in MEASUREMENTS)
GIRTHS = ("chest", "waist", "hip", "neck", "thigh", "upper_arm", "underbust", "wrist", "calf")


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


def convex_hull(points_2d: np.ndarray) -> np.ndarray:
    """Convex hull vertices (H, 2), float64, in order around the hull."""
    return cv2.convexHull(np.asarray(points_2d, np.float32).reshape(-1, 1, 2)).reshape(-1, 2).astype(np.float64)


def convex_perimeter(points_2d: np.ndarray) -> float:
    """Perimeter of the convex hull of 2-D points (0 for fewer than 3)."""
    if len(points_2d) < 3:
        return 0.0
    hull = convex_hull(points_2d)
    return float(np.linalg.norm(hull - np.roll(hull, 1, axis=0), axis=1).sum())


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


def tape_length(points: np.ndarray, a: np.ndarray, b: np.ndarray, outward: np.ndarray) -> float:
    """Length of a tape from ``a`` to ``b`` laid over ``points`` on their ``outward`` side.

    Everything is projected onto the plane spanned by ``b - a`` and ``outward`` (the plane
    the tape bends in); points beyond ``a`` or ``b`` along ``b - a`` are ignored. The tape is
    the convex-hull chain from ``a`` to ``b`` on the outward side: it lies on bulges and
    bridges hollows. Points with nothing outside the chord give the straight distance.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    e1 = b - a
    length = float(np.linalg.norm(e1))
    if length == 0:
        return 0.0
    e1 /= length
    e2 = np.asarray(outward, np.float64) - (np.asarray(outward, np.float64) @ e1) * e1
    e2 /= np.linalg.norm(e2)
    p = (np.asarray(points, np.float64).reshape(-1, 3) - a) @ np.stack([e1, e2]).T  # (N, 2)
    p = p[(p[:, 0] > 0) & (p[:, 0] < length) & (p[:, 1] > 0)]  # between the ends, outside the chord
    return _chain_length(np.vstack([[0.0, 0.0], [length, 0.0], p]))


def _chain_length(p: np.ndarray) -> float:
    """Hull chain from p[0] to p[1] through the side with positive 2nd coordinate."""
    if len(p) < 3:
        return float(np.linalg.norm(p[1] - p[0]))
    hull = convex_hull(p)
    closed = np.linalg.norm(hull - np.roll(hull, 1, axis=0), axis=1).sum()
    # The chord from p[0] to p[1] is a hull edge (all other points lie on one side of it):
    # the chain is the rest of the perimeter.
    return float(closed - np.linalg.norm(p[1] - p[0]))


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


def band_faces(z: np.ndarray, faces: np.ndarray, z0: float, z1: float) -> np.ndarray:
    """The faces of ``faces`` that reach into the height band [z0, z1] (cheaper sections)."""
    fz = z[faces]
    return faces[(fz.max(1) >= z0) & (fz.min(1) <= z1)]


def pick(points: np.ndarray, dist: np.ndarray, tol: float, score: np.ndarray) -> np.ndarray:
    """The point of highest ``score`` among those with ``dist < tol`` (at least the 6 nearest:
    a landmark window is never empty, however the body is shaped)."""
    near = dist <= max(tol, float(np.partition(dist, min(5, len(dist) - 1))[min(5, len(dist) - 1)]))
    return points[near][np.argmax(score[near])]


# ----------------------------------------------------------------------------- Anny
#: Bones whose vertices are the arm (a tape around the torso leaves them out).
ARM_BONES = ("clavicle", "shoulder01", "upperarm", "lowerarm", "wrist", "finger", "metacarpal")
_LEG = ("upperleg", "lowerleg", "foot", "toe")
_TORSO = ("root", "pelvis", "spine")
_HEAD = ("head", "jaw", "eye", "tongue", "special", "levator", "oris", "orbicularis", "temporalis", "risorius")
_JOINTS = (
    "upperarm01.L", "upperarm01.R", "lowerarm01.L", "wrist.L", "lowerleg01.L", "foot.L",
    "spine04", "spine02",
)
_REGRESSOR_BODIES, _REGRESSOR_SEED, _REGRESSOR_VERTICES = 96, 12345, 64
#: The natural-waist search band, as fractions of the way from Anny's spine04 to spine02 joint:
#: the iliac crest and the lowest (tenth) rib. ANSUR II puts them at 36-39% and 46-50% of the way
#: from the crotch up to the acromion (men-women means, ``iliocristaleheight``, ``tenthribheight``);
#: on the sampler's bodies that is 22% and 65% of the way from spine04 to spine02
#: (``python -m training.landmark_levels``, bodyshape/data/ansur2_levels.csv).
WAIST_BAND = (0.22, 0.65)
#: The chest band the bust points are searched in once (:func:`find_bust_points`), as fractions
#: of the way from the lowest rib (``WAIST_BAND[1]``) up to the shoulder joints.
BUST_BAND = (0.35, 0.85)
#: Version of the measurement definitions: bump on any change that moves a measurement, so
#: caches of measured features (training/fit_correction.py) and the correction fitted on them
#: are known to be stale. 2: waist band ends at the lowest rib, underbust above the waist, the
#: waist's side and back points on the waist section. 3: the chest at the bust-point vertices
#: instead of the most forward point of each mesh's chest band, which jumped between the
#: pectorals and the belly on flat chests (docs/measurements.md).
DEFINITIONS_VERSION = 3


def _sample_rest(model: BodyModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fixed sample of bodies the landmarks are fitted on: (shapes (B, S), rest vertices
    (B, V, 3), rest bone heads (B, J, 3))."""
    import torch

    shapes = model.sample_shapes(_REGRESSOR_BODIES, seed=_REGRESSOR_SEED)
    with torch.no_grad():
        out = model.anny(
            phenotype_kwargs=torch.as_tensor(shapes[:, :N_PHENOTYPES], dtype=model.anny.dtype),
            local_changes_kwargs=torch.as_tensor(shapes[:, N_PHENOTYPES:], dtype=model.anny.dtype),
        )
    return shapes, out["rest_vertices"].cpu().numpy(), out["rest_bone_heads"].cpu().numpy()


def find_bust_points(model: BodyModel, torso: np.ndarray, sample: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[int, int]:
    """The left and right bust-point (nipple) vertices of Anny's topology: of the torso
    vertices (bool mask ``torso``) in the chest band (:data:`BUST_BAND`) on the body's left,
    the one that lies, on average over the sample's women (``gender`` > 0.5), least behind the
    most forward point of that band; the right one is its mirror image on the template.

    Why vertices, not each mesh's most forward point: on a flat chest (most men, some women)
    the most forward point of the band jumps between the pectorals and the belly at its lower
    edge with a millimetre of change, and the chest girth with it by up to 7 cm; the nipple
    vertex moves with the breast on every body (on women it is that most forward point)."""
    shapes, verts, heads = sample
    label = list(model.bone_labels)
    s4, s2 = heads[:, label.index("spine04"), 2], heads[:, label.index("spine02"), 2]
    rib = s4 + WAIST_BAND[1] * (s2 - s4)
    shoulder = 0.5 * (heads[:, label.index("upperarm01.L"), 2] + heads[:, label.index("upperarm01.R"), 2])
    left = torso & (model.anny.template_vertices[:, 0].cpu().numpy() > 0)
    behind = []
    for v, r, sh in zip(verts[shapes[:, 0] > 0.5], rib[shapes[:, 0] > 0.5], shoulder[shapes[:, 0] > 0.5], strict=True):
        band = left & (v[:, 2] > r + BUST_BAND[0] * (sh - r)) & (v[:, 2] < r + BUST_BAND[1] * (sh - r))
        behind.append(np.where(band, v[:, 1] - v[band, 1].min(), np.inf))
    lv = int(np.argmin(np.mean(behind, axis=0)))
    t = model.anny.template_vertices.cpu().numpy()
    rv = int(np.argmin(np.linalg.norm(t - t[lv] * np.array([-1.0, 1.0, 1.0]), axis=1)))
    return lv, rv


def fit_joint_regressor(model: BodyModel, sample: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                        ) -> dict[str, tuple[np.ndarray, np.ndarray]]:  # fmt: skip
    """Per joint of :data:`_JOINTS`: 64 nearby vertex indices and least-squares weights
    (summing to 1) that reproduce Anny's rest joint position over a sample of bodies
    (``sample``: :func:`_sample_rest`, made here if None)."""
    _, verts, heads = sample or _sample_rest(model)  # (B, V, 3), (B, J, 3)
    reg = {}
    for name in _JOINTS:
        j = model.bone_labels.index(name)
        idx = np.argsort(np.linalg.norm(verts[0] - heads[0, j], axis=1))[:_REGRESSOR_VERTICES]
        # Solve sum_k w_k v_k = joint for all bodies and all 3 coordinates, with sum w = 1.
        a = np.vstack([verts[:, idx, :].transpose(0, 2, 1).reshape(-1, len(idx)), 10 * np.ones((1, len(idx)))])
        b = np.concatenate([heads[:, j, :].reshape(-1), [10.0]])
        reg[name] = (idx, np.linalg.lstsq(a, b, rcond=None)[0])
    return reg


class Measurer:
    """Measures Anny meshes (rest A-pose, any uniform scale and translation).

    Read-only after construction (everything, the joint regressor included, is built in the
    constructor), so one instance serves many threads; use :func:`get_measurer`.
    """

    def __init__(self, model: BodyModel | None = None) -> None:
        self.model = model or get_body_model()
        faces = self.model.faces
        vlabel = np.array([self.model.bone_labels[b] for b in self.model.dominant_bone])

        def vmask(*prefixes: str, side: str = "") -> np.ndarray:
            return np.array([s.startswith(prefixes) and s.endswith(side) for s in vlabel])

        def fmask(vm: np.ndarray) -> np.ndarray:
            return faces[vm[faces].sum(1) >= 2]  # a face belongs where 2 of 3 vertices do

        arm, torso, neck, head = vmask(*ARM_BONES), vmask(*_TORSO), vmask("neck"), vmask(*_HEAD)
        self.faces_torso = fmask(torso)
        self.faces_lower = fmask(torso | vmask(*_LEG))
        self.faces_leg_l = fmask(vmask("upperleg", side=".L"))
        self.faces_lowerleg_l = fmask(vmask("lowerleg", side=".L"))
        self.faces_uarm_l = fmask(vmask("upperarm", side=".L"))
        self.faces_farm_l = fmask(vmask("lowerarm", side=".L"))
        near_neck = (neck | vmask("spine01", "spine02")) & ~arm & ~head
        self.faces_neck = faces[near_neck[faces].all(1)]  # neck + upper trunk, no arms or head
        self.faces_wrist_l = fmask(vmask("lowerarm", "wrist", side=".L"))
        x = self.model.anny.template_vertices[:, 0].cpu().numpy()
        self.idx_torso = np.flatnonzero(torso)
        self.idx_lower = np.flatnonzero(torso | vmask(*_LEG))
        self.idx_trunk = np.flatnonzero(torso | neck)
        self.idx_arm_l = np.flatnonzero(vmask("upperarm", "lowerarm", side=".L"))
        upper = torso | neck | vmask("clavicle", "shoulder01", "upperarm")
        self.idx_shoulder = {"L": np.flatnonzero(upper & (x > 0)), "R": np.flatnonzero(upper & (x < 0))}
        self.idx_armpit = {}  # trunk side of each arm's skinning boundary (the armpit folds)
        for side in ("L", "R"):
            seam = faces[torso[faces].any(1) & vmask("upperarm", "shoulder01", side=f".{side}")[faces].any(1)]
            self.idx_armpit[side] = np.unique(seam[torso[seam]])
        self.cervicale, self.jugular = self._neck_base_vertices(faces, neck, torso | arm)
        sample = _sample_rest(self.model)
        self.joint_regressor = fit_joint_regressor(self.model, sample)
        self.bust_points = find_bust_points(self.model, torso, sample)

    def _neck_base_vertices(self, faces: np.ndarray, neck: np.ndarray, below: np.ndarray) -> tuple[int, int]:
        """Back (cervicale) and front (jugular notch) mid-line vertices of the boundary between
        the neck's skin and the trunk/shoulders' skin, found once on Anny's template."""
        t = self.model.anny.template_vertices.cpu().numpy()
        seam_faces = faces[neck[faces].any(1) & below[faces].any(1)]
        seam = np.unique(seam_faces[neck[seam_faces]])
        mid = seam[np.abs(t[seam, 0]) < 1e-3]
        return int(mid[np.argmax(t[mid, 1])]), int(mid[np.argmin(t[mid, 1])])

    def joints(self, v: np.ndarray) -> dict[str, np.ndarray]:
        return {k: w @ v[idx] for k, (idx, w) in self.joint_regressor.items()}

    def __call__(self, vertices: np.ndarray) -> dict[str, float]:
        """Measurements (metres) of one mesh (V, 3) in the rest A-pose."""
        v, j, u = self._frame(vertices)
        floor, top = float(v[:, 2].min()), float(v[:, 2].max())
        lv = self._levels(v, j, u)
        acromion = self._acromions(v, j, u)
        out = {"height": top - floor, "inseam": lv["crotch"] - floor}
        out.update(self._trunk_girths(v, lv, u))
        out.update(self._limbs(v, j, acromion["L"], lv, u))
        out["shoulder"] = float(np.linalg.norm(acromion["L"] - acromion["R"]))
        out.update(self._trunk_lengths(v, lv, u, floor))
        return {k: float(out[k]) for k in MEASUREMENT_NAMES}

    def _frame(self, vertices: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray], float]:
        """(vertices as float64, joints, u): offsets below are for a 1.7 m body, u scales them."""
        v = np.asarray(vertices, np.float64)
        return v, self.joints(v), (v[:, 2].max() - v[:, 2].min()) / 1.7

    def levels(self, vertices: np.ndarray) -> dict[str, float]:
        """Heights (z, metres) of the landmarks the trunk girths are taken at (crotch, natural
        waist, bust point, underbust, buttocks) of one rest-pose mesh (V, 3), and its mid-line x."""
        return self._levels(*self._frame(vertices))

    def acromions(self, vertices: np.ndarray) -> dict[str, np.ndarray]:
        """The left and right acromion ("L", "R": points (3,)) of one rest-pose mesh (V, 3)."""
        return self._acromions(*self._frame(vertices))

    def _acromions(self, v: np.ndarray, j: dict[str, np.ndarray], u: float) -> dict[str, np.ndarray]:
        return {s: self._acromion(v, s, j[f"upperarm01.{s}"], u) for s in ("L", "R")}

    def _levels(self, v: np.ndarray, j: dict[str, np.ndarray], u: float) -> dict[str, float]:
        """Heights (z) of the crotch, natural waist, bust point, underbust and buttocks."""
        z = v[:, 2]
        mid_x = 0.5 * (j["upperarm01.L"][0] + j["upperarm01.R"][0])
        t = v[self.idx_torso]  # trunk skin only: touching inner thighs meet at the mid-line too
        trunk_mid = t[(np.abs(t[:, 0] - mid_x) < 0.012 * u) & (t[:, 2] > j["lowerleg01.L"][2])]
        crotch = float(trunk_mid[:, 2].min())
        s4, s2 = j["spine04"][2], j["spine02"][2]
        crest, rib = (s4 + f * (s2 - s4) for f in WAIST_BAND)
        levels = np.linspace(crest, rib, 10)
        g = horizontal_girths(v, band_faces(z, self.faces_torso, levels[0], levels[-1]), levels)
        waist = float(levels[np.argmin(g)])
        left, right = v[list(self.bust_points)]
        bust = np.array([left[0], left[1], 0.5 * (left[2] + right[2])])  # the nipples' level
        under = self._breast_fold(t, bust, u, floor=waist + 0.02 * u)
        low = v[self.idx_lower]
        buttock = low[(low[:, 2] > crotch + 0.01 * u) & (low[:, 2] < waist)]
        hip = float(buttock[np.argmax(buttock[:, 1]), 2])  # the most posterior point
        return {"crotch": crotch, "waist": waist, "bust": float(bust[2]), "underbust": under, "hip": hip,
                "mid_x": float(mid_x)}

    @staticmethod
    def _breast_fold(torso: np.ndarray, bust: np.ndarray, u: float, floor: float, bins: int = 10) -> float:
        """Height 2-12 cm below the bust point, and above ``floor`` (2 cm over the natural waist),
        where the chest front under it is farthest back; of levels within 2 mm of that, the highest
        (a flat front, as on a small chest or a man's, puts the fold just under the breast or the
        pectorals, not at the bottom of the window)."""
        top = bust[2] - 0.02 * u
        bottom = min(max(bust[2] - 0.12 * u, floor), top - 0.01 * u)
        col = torso[(np.abs(torso[:, 0] - bust[0]) < 0.015 * u) & (torso[:, 2] > bottom) & (torso[:, 2] < top)]
        edges = np.linspace(bottom, top, bins + 1)
        k = np.clip(np.searchsorted(edges, col[:, 2]) - 1, 0, bins - 1)
        front = np.full(bins, -np.inf)
        np.maximum.at(front, k, -col[:, 1])  # -y: how far forward each level reaches
        front[~np.isin(np.arange(bins), k)] = np.inf  # empty bins never win
        b = int(np.flatnonzero(front <= front.min() + 0.002 * u).max())
        return float(0.5 * (edges[b] + edges[b + 1]))

    def _trunk_girths(self, v: np.ndarray, lv: dict[str, float], u: float) -> dict[str, float]:
        c, jn = v[self.cervicale], v[self.jugular]
        normal = np.cross(c - jn, [1.0, 0.0, 0.0])  # the plane holds the C7-notch line and the x axis
        normal *= np.sign(normal[2])
        levels = np.array([lv["bust"], lv["underbust"], lv["waist"]])
        chest, underbust, waist = horizontal_girths(v, self.faces_torso, levels)
        return {
            "chest": chest, "underbust": underbust, "waist": waist,
            "hip": horizontal_girth(v, band_faces(v[:, 2], self.faces_lower, lv["hip"], lv["hip"]), lv["hip"]),
            "neck": girth(v, self.faces_neck, c, normal),
        }

    def _acromion(self, v: np.ndarray, side: str, joint: np.ndarray, u: float) -> np.ndarray:
        """Top of the shoulder above the lateral part of the humeral head: the highest skin
        point 1.5 cm (for a 1.7 m body) lateral of the shoulder joint centre, near its depth."""
        sgn = 1.0 if side == "L" else -1.0
        p = v[self.idx_shoulder[side]]
        p = p[np.abs(p[:, 1] - joint[1]) < 0.03 * u]
        return pick(p, np.abs(p[:, 0] - (joint[0] + sgn * 0.015 * u)), 0.01 * u, p[:, 2])

    def _limbs(
        self, v: np.ndarray, j: dict[str, np.ndarray], acromion: np.ndarray, lv: dict[str, float], u: float
    ) -> dict[str, float]:
        """Left arm and leg: upper arm, wrist, thigh and calf girths, arm length."""
        z = v[:, 2]
        sh, el, wr = j["upperarm01.L"], j["lowerarm01.L"], j["wrist.L"]
        bend = el - 0.5 * (sh + wr)  # the outside of the elbow bend
        bend /= np.linalg.norm(bend)
        arm = v[self.idx_arm_l]
        upper = (el - sh) / np.linalg.norm(el - sh)
        olecranon = pick(arm, np.abs((arm - el) @ upper), 0.01 * u, arm @ bend)  # across the arm at the elbow
        fore = (wr - el) / np.linalg.norm(wr - el)
        wrist_c = wr - 0.01 * u * fore
        styloid = pick(arm, np.abs((arm - wrist_c) @ fore), 0.005 * u, arm @ bend)
        knee, ankle = j["lowerleg01.L"][2], j["foot.L"][2]
        calf_levels = np.linspace(ankle + 0.3 * (knee - ankle), ankle + 0.9 * (knee - ankle), 6)
        thigh_levels = np.linspace(lv["crotch"] - 0.08 * u, lv["crotch"] - 0.01 * u, 5)

        def max_girth(faces: np.ndarray, levels: np.ndarray) -> float:
            return float(horizontal_girths(v, band_faces(z, faces, levels[0], levels[-1]), levels).max())

        return {
            "upper_arm": girth(v, self.faces_uarm_l, 0.5 * (acromion + olecranon), el - sh),
            "wrist": girth(v, self.faces_wrist_l, wrist_c, fore),
            "thigh": max_girth(self.faces_leg_l, thigh_levels),
            "calf": max_girth(self.faces_lowerleg_l, calf_levels),
            "arm_length": tape_length(arm, acromion, olecranon, bend) + tape_length(arm, olecranon, styloid, bend),
        }

    def _trunk_lengths(self, v: np.ndarray, lv: dict[str, float], u: float, floor: float) -> dict[str, float]:
        """Outside leg, back waist length and across-back width (tape polylines)."""
        x = v[:, 0] - lv["mid_x"]
        low = self.idx_lower[x[self.idx_lower] > 0]
        # The waist's side and back points lie on the waist section itself (mesh vertices near
        # that level can be a centimetre or more away from it, and on the wrong side of the body).
        zw = lv["waist"]
        waist_sec = section_points(v, band_faces(v[:, 2], self.faces_torso, zw, zw), np.array([0.0, 0.0, zw]), _Z)
        waist_side = waist_sec[np.argmax(waist_sec[:, 0])]
        hips = low[(v[low, 2] > lv["crotch"]) & (v[low, 2] < zw)]
        hip_side = v[hips[np.argmax(x[hips])]]
        outside_leg = tape_length(v[low], waist_side, hip_side, [1.0, 0, 0]) + hip_side[2] - floor
        spine = self.idx_trunk[np.abs(x[self.idx_trunk]) < 0.015 * u]
        back_waist = pick(waist_sec, np.abs(waist_sec[:, 0] - lv["mid_x"]), 0.015 * u, waist_sec[:, 1])
        back = tape_length(v[spine], v[self.cervicale], back_waist, [0, 1.0, 0])
        z_back = v[self.idx_armpit["L"], 2].min() + 0.02 * u
        sec = section_points(v, band_faces(v[:, 2], self.faces_torso, z_back, z_back), np.array([0, 0, z_back]), _Z)
        folds = []
        for side in ("L", "R"):  # the back point of the arm's boundary at that height
            seam = v[self.idx_armpit[side]]
            folds.append(pick(seam, np.abs(seam[:, 2] - z_back), 0.015 * u, seam[:, 1]))
        return {
            "outside_leg": outside_leg,
            "back_waist_length": back,
            "across_back": tape_length(np.vstack([sec, folds]), folds[0], folds[1], [0, 1.0, 0]),
        }

    def batch(self, vertices: np.ndarray) -> np.ndarray:
        """(B, V, 3) -> (B, len(MEASUREMENT_NAMES)) float32, metres."""
        return np.array(
            [[m[k] for k in MEASUREMENT_NAMES] for m in map(self, vertices)], np.float32
        ).reshape(len(vertices), len(MEASUREMENT_NAMES))


_MEASURER: Shared[Measurer] = Shared(Measurer, "measurer")
#: The process-wide measurer (built once, on first use, under a lock; read-only).
get_measurer = _MEASURER.get


def measure(vertices: np.ndarray) -> dict[str, float]:
    """Measurements (metres) of one Anny mesh (V, 3) in the rest A-pose."""
    return get_measurer()(vertices)
