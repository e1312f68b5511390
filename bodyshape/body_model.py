"""The body model: Anny, restricted to the shape parameters this project predicts.

Shape vector (``S = len(SHAPE_LABELS)``): Anny's 6 phenotypes in [0, 1], then a chosen set
of body (not face) local changes in [-1, 1]. The list is versioned with the weights: a
checkpoint stores ``SHAPE_VERSION`` and its labels, and loading refuses a mismatch.

Coordinates: Anny is Z-up, metres, origin near the pelvis; -Y is the front of the body.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import threading
from dataclasses import dataclass

import numpy as np
import torch

from bodyshape.coefficients import BlendshapeCoefficients
from bodyshape.errors import BodyShapeError
from bodyshape.paths import use_anny_cache
from bodyshape.shared import Shared

SHAPE_VERSION = "anny-0.6/v1"

PHENOTYPE_LABELS: tuple[str, ...] = ("gender", "age", "muscle", "weight", "height", "proportions")

#: Body local changes that move the outline or a girth users read. Face, hand and foot
#: details are left at 0: they are invisible at silhouette resolution.
#: The order is Anny's own order for this subset (Anny orders local changes itself); the
#: shape vector follows it, and BodyModel checks it at start-up.
LOCAL_CHANGE_LABELS: tuple[str, ...] = (
    "measure-upperarm-circ-incr",
    "buttocks-volume-incr",
    "hip-scale-depth-incr",
    "measure-upperleg-height-incr",
    "measure-thigh-circ-incr",
    "measure-neck-circ-incr",
    "stomach-pregnant-incr",
    "measure-underbust-circ-incr",
    "torso-scale-horiz-incr",
    "torso-scale-depth-incr",
    "measure-shoulder-dist-incr",
    "measure-hips-circ-incr",
    "measure-waist-circ-incr",
    "measure-bust-circ-incr",
)
#: The list handed to Anny (its cache key): kept as first written so the cached build is reused.
_ANNY_LOCAL_CHANGES_ARG: tuple[str, ...] = (
    "measure-bust-circ-incr",
    "measure-underbust-circ-incr",
    "measure-waist-circ-incr",
    "measure-hips-circ-incr",
    "measure-thigh-circ-incr",
    "measure-upperarm-circ-incr",
    "measure-neck-circ-incr",
    "measure-shoulder-dist-incr",
    "measure-upperleg-height-incr",
    "stomach-pregnant-incr",
    "buttocks-volume-incr",
    "torso-scale-depth-incr",
    "torso-scale-horiz-incr",
    "hip-scale-depth-incr",
)

SHAPE_LABELS: tuple[str, ...] = PHENOTYPE_LABELS + LOCAL_CHANGE_LABELS
N_PHENOTYPES = len(PHENOTYPE_LABELS)
N_SHAPE = len(SHAPE_LABELS)
#: Vertices of Anny's full-resolution mesh (checked against Anny when the model is built), so
#: code that only needs the count (export shapes, Triton configs) does not build Anny.
N_VERTICES = 13718

#: Spread of the local changes: a normal distribution of this standard deviation, clipped
#: to +-LOCAL_CHANGE_CLIP. Anny's local changes reach caricatures near +-1; within +-0.6
#: bodies stay plausible, and most people sit near the phenotype's average shape.
LOCAL_CHANGE_STD = 0.3
LOCAL_CHANGE_CLIP = 0.6

log = logging.getLogger(__name__)


def check_shape(shape: np.ndarray | torch.Tensor) -> None:
    """Raise a clear error unless ``shape`` is ``(B, N_SHAPE)`` and finite."""
    if shape.ndim != 2 or shape.shape[1] != N_SHAPE:
        raise BodyShapeError(
            f"shape parameters must have shape (batch, {N_SHAPE}) "
            f"[{', '.join(SHAPE_LABELS)}], got {tuple(shape.shape)}"
        )
    finite = torch.isfinite(shape).all() if isinstance(shape, torch.Tensor) else np.isfinite(shape).all()
    if not bool(finite):
        raise BodyShapeError("shape parameters contain NaN or infinity")


def clamp_shape(shape: torch.Tensor) -> torch.Tensor:
    """Clamp phenotypes to [0, 1] and local changes to [-1, 1], Anny's valid ranges."""
    return torch.cat(
        [shape[:, :N_PHENOTYPES].clamp(0, 1), shape[:, N_PHENOTYPES:].clamp(-1, 1)], dim=1
    )


# ----------------------------------------------------------------------------- poses
def _rotvec_to_homogeneous(rotvec: torch.Tensor) -> torch.Tensor:
    """(B, 3) axis-angle -> (B, 4, 4) rotation about the bone head (Rodrigues)."""
    theta = rotvec.norm(dim=1, keepdim=True).clamp_min(1e-12)
    k = rotvec / theta
    kx, ky, kz = k[:, 0], k[:, 1], k[:, 2]
    zero = torch.zeros_like(kx)
    kmat = torch.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], dim=1).view(-1, 3, 3)
    eye = torch.eye(3, dtype=rotvec.dtype).expand_as(kmat)
    s, c = torch.sin(theta)[..., None], torch.cos(theta)[..., None]
    rot = eye + s * kmat + (1 - c) * kmat @ kmat
    out = torch.eye(4, dtype=rotvec.dtype).repeat(rotvec.shape[0], 1, 1)
    out[:, :3, :3] = rot
    return out


def _mirror(rotvec: torch.Tensor) -> torch.Tensor:
    """Mirror a left-side rotation to the right side (reflection through the x=0 plane)."""
    return rotvec * torch.tensor([1.0, -1.0, -1.0], dtype=rotvec.dtype)


#: Capture pose, as axis-angle rotations (radians, Anny's "local-ref" parameterisation,
#: world-aligned axes) of the left-side bones; the right side is mirrored.
#: Front view: Anny's rest A-pose (arms about 45 degrees down, away from the torso, so the
#: waist is visible), feet slightly apart. Side view: arms hanging straight down along the
#: body, wrists under the shoulders, as people stand in a profile photo. The side-view
#: angles were fitted once by gradient descent on elbow and wrist positions (see
#: docs/decisions.md); without them the rest pose puts the hands in front of the hips.
CAPTURE_POSES: dict[str, dict[str, tuple[float, float, float]]] = {
    "front": {},
    "side": {
        "upperarm01.L": (0.2136, 0.5921, -0.4280),
        "lowerarm01.L": (0.6760, -0.0070, 0.3228),
    },
}


@dataclass(frozen=True)
class PoseJitter:
    """Standard deviations (degrees) of the pose augmentation around the capture pose."""

    arm_abduction: float = 6.0  # arms further from / closer to the torso (front view)
    arm_swing: float = 5.0  # arms forwards/backwards
    elbow: float = 5.0
    leg_spread: float = 3.0  # feet further apart / closer
    torso_lean: float = 3.0  # whole-body forward/backward lean
    head_tilt: float = 4.0


NO_JITTER = PoseJitter(0, 0, 0, 0, 0, 0)


@dataclass(frozen=True)
class PoseOffsets:
    """Deliberate pose changes from the capture pose, degrees, one value per body (or one for all).

    Signs: ``arm_abduction`` > 0 moves both arms away from the torso; ``arm_swing`` > 0 moves
    them forwards; ``elbow`` > 0 bends both elbows (forearms forwards); ``leg_spread`` > 0 puts
    the feet further apart (< 0: thighs together, then overlapping); ``torso_lean`` > 0 leans
    the whole body forwards; ``head_tilt`` > 0 tilts the head forwards. The evaluation splits
    use them to leave the training distribution on purpose (``tests/test_body_model.py``
    checks each sign on the skeleton).
    """

    arm_abduction: float | np.ndarray = 0.0
    arm_swing: float | np.ndarray = 0.0
    elbow: float | np.ndarray = 0.0
    leg_spread: float | np.ndarray = 0.0
    torso_lean: float | np.ndarray = 0.0
    head_tilt: float | np.ndarray = 0.0


def capture_pose(
    view: str,
    batch: int,
    rng: np.random.Generator | None = None,
    jitter: PoseJitter = PoseJitter(),
    offsets: PoseOffsets | None = None,
) -> dict[str, torch.Tensor]:
    """Pose deltas ``{bone: (B, 4, 4)}`` for ``view`` ("front" or "side"): the capture pose,
    jittered if ``rng`` is given, plus ``offsets`` if given."""
    if view not in CAPTURE_POSES:
        raise BodyShapeError(f"unknown view {view!r}; expected one of {sorted(CAPTURE_POSES)}")
    dt = torch.float64
    rot: dict[str, torch.Tensor] = {}
    for bone, rv in CAPTURE_POSES[view].items():
        base = torch.tensor(rv, dtype=dt).expand(batch, 3).clone()
        rot[bone] = base
        rot[bone.replace(".L", ".R")] = _mirror(base)
    if rng is not None or offsets is not None:
        _add_pose_changes(rot, _pose_angles(batch, rng, jitter, offsets))
    return {bone: _rotvec_to_homogeneous(rv) for bone, rv in rot.items()}


def _pose_angles(
    batch: int, rng: np.random.Generator | None, jitter: PoseJitter, offsets: PoseOffsets | None
) -> dict[str, torch.Tensor]:
    """Per-body angles (radians, (B,) each) in the rotation conventions of :func:`_add_pose_changes`.

    The random draws keep the order the training data was generated with (datasets stay
    byte-identical for a seed): per arm swing then abduction, then elbow, legs, lean, head.
    """

    def draw(std: float) -> np.ndarray:
        return rng.normal(0.0, math.radians(std), batch) if rng is not None else np.zeros(batch)

    a = {}
    for side in ("L", "R"):
        a[f"swing.{side}"], a[f"abduction.{side}"] = draw(jitter.arm_swing), draw(jitter.arm_abduction)
    a["elbow"], a["spread"] = draw(jitter.elbow), draw(jitter.leg_spread)
    a["lean"], a["head"] = draw(jitter.torso_lean), draw(jitter.head_tilt)
    if offsets is not None:

        def rad(value: float | np.ndarray) -> np.ndarray:
            return np.broadcast_to(np.radians(np.asarray(value, np.float64)), (batch,))

        for side in ("L", "R"):  # these rotation axes: + swing = backwards, + abduction = inwards
            a[f"swing.{side}"] = a[f"swing.{side}"] - rad(offsets.arm_swing)
            a[f"abduction.{side}"] = a[f"abduction.{side}"] - rad(offsets.arm_abduction)
        a["elbow"] = a["elbow"] - rad(offsets.elbow)
        a["spread"] = a["spread"] + rad(offsets.leg_spread)
        a["lean"] = a["lean"] + rad(offsets.torso_lean)
        a["head"] = a["head"] + rad(offsets.head_tilt)
    return {k: torch.from_numpy(np.ascontiguousarray(v, np.float64)) for k, v in a.items()}


def _add_pose_changes(rot: dict[str, torch.Tensor], a: dict[str, torch.Tensor]) -> None:
    """Add the axis-angle changes of :func:`_pose_angles` to the capture pose ``rot`` (in place)."""
    batch = a["elbow"].shape[0]
    zeros = torch.zeros(batch, dtype=torch.float64)

    def add(bone: str, rv: torch.Tensor, mirror: bool = True) -> None:
        rot[bone] = rot.get(bone, torch.zeros(batch, 3, dtype=torch.float64)) + rv
        if mirror and bone.endswith(".L"):
            r = bone.replace(".L", ".R")
            rot[r] = rot.get(r, torch.zeros(batch, 3, dtype=torch.float64)) + _mirror(rv)

    # Each side gets its own arm angles: people are not symmetric.
    for side, sign in (("L", 1.0), ("R", -1.0)):
        add(f"upperarm01.{side}", torch.stack([a[f"swing.{side}"], sign * a[f"abduction.{side}"], zeros], 1), mirror=False)
    add("lowerarm01.L", torch.stack([a["elbow"], zeros, zeros], 1))
    add("upperleg01.L", torch.stack([zeros, -a["spread"], zeros], 1))
    add("root", torch.stack([a["lean"], zeros, zeros], 1), mirror=False)
    add("neck01", torch.stack([a["head"], zeros, zeros], 1), mirror=False)


# ----------------------------------------------------------------------------- model
@dataclass
class BodyOutput:
    """Meshes of a batch of bodies, metres, Z up."""

    vertices: np.ndarray  # (B, V, 3) posed
    rest_vertices: np.ndarray  # (B, V, 3) rest A-pose, on which measurements are taken
    faces: np.ndarray  # (F, 3) int


class _GenderDistribution:
    """Adults are mostly clearly male (0) or female (1); 15% anywhere in between.

    Anny's ``gender`` phenotype interpolates its variations ``["male", "female"]``: 0 is male,
    1 is female (``tests/test_body_model.py`` checks it on the meshes: neck, shoulders, hips).
    """

    def sample(self, shape: tuple[int, ...]) -> torch.Tensor:
        n = shape[0]
        near_end = torch.distributions.Beta(1.0, 10.0).sample((n,)).double()
        female = torch.rand(n, dtype=torch.float64) < 0.5
        g = torch.where(female, 1.0 - near_end, near_end)
        anywhere = torch.rand(n, dtype=torch.float64) < 0.15
        return torch.where(anywhere, torch.rand(n, dtype=torch.float64), g)


class BodyModel:
    """Anny with this project's shape vector, on one device. Build once (cached on disk by
    anny) and share: every attribute is set in the constructor and never changed after (the
    constructor also runs Anny once, so Warp's kernels are built before any thread shares
    them), and the one operation that touches process-wide state (seeded sampling: torch's
    global RNG) holds a lock, so one instance serves many threads. Use :func:`get_body_model`.
    """

    def __init__(self, device: str | torch.device = "cpu") -> None:
        use_anny_cache()  # anny reads ANNY_CACHE_DIR when it is imported
        import anny  # heavy import, deferred
        from anny.shape_distribution import SimpleShapeDistribution

        with contextlib.redirect_stdout(io.StringIO()):  # warp prints a banner
            self.anny = anny.Anny(local_changes=list(_ANNY_LOCAL_CHANGES_ARG))
        self.anny.eval()
        if tuple(self.anny.phenotype_labels) != PHENOTYPE_LABELS or tuple(self.anny.local_change_labels) != LOCAL_CHANGE_LABELS:
            raise BodyShapeError(
                f"this anny version orders the shape parameters differently ({self.anny.phenotype_labels}, "
                f"{self.anny.local_change_labels}); install anny==0.6.2 or update SHAPE_LABELS"
            )
        if int(self.anny.template_vertices.shape[0]) != N_VERTICES:
            raise BodyShapeError(
                f"this anny version has {self.anny.template_vertices.shape[0]} vertices, expected {N_VERTICES}"
            )
        self.faces: np.ndarray = self.anny.faces.cpu().numpy().astype(np.int32)
        self.bone_labels: list[str] = list(self.anny.bone_labels)
        idx = self.anny.vertex_bone_indices.cpu().numpy()
        w = self.anny.vertex_bone_weights.cpu().numpy()
        #: (V,) index of the bone with the largest skinning weight of each vertex.
        self.dominant_bone: np.ndarray = idx[np.arange(len(idx)), w.argmax(1)]
        age = torch.distributions.Uniform(
            torch.tensor(18.0, dtype=torch.float64), torch.tensor(80.0, dtype=torch.float64)
        )
        self._sampler = SimpleShapeDistribution(
            self.anny, morphological_age_distribution=age, gender_distribution=_GenderDistribution()
        )
        self._lock = threading.Lock()  # torch's global RNG (sampling) and the basis cache
        self._basis_cache: dict[tuple | None, tuple[torch.Tensor, torch.Tensor]] = {}
        self.device = torch.device(device)
        if self.device.type != "cpu":
            self.anny.to(self.device)
        #: Anny's blendshape coefficients in a few tensor ops, unchecked (no GPU sync): training
        #: calls it every step. Elsewhere use :meth:`blendshape_coefficients`, which checks.
        self.coefficients = BlendshapeCoefficients(self.anny)
        # Warp (Anny's skinning) builds a kernel's launch data on its first launch, and not
        # thread-safely: two page requests launching it at once in a fresh process failed with
        # "'Adjoint' object has no attribute 'tid_extent_limit_candidate'" or a KeyError. One
        # launch here, before the instance is shared (Shared builds it under its lock), was
        # meant to make every later launch a lookup, but on a loaded machine 8 threads still
        # hit the error once (CI, 2026-12-02). So every Anny call also holds this lock. A call
        # is milliseconds against seconds of other work per request, and torch still uses all
        # cores inside it.
        self._anny_lock = threading.Lock()
        warm = torch.zeros(1, N_SHAPE)
        warm[:, :N_PHENOTYPES] = 0.5
        self.forward(warm)

    @property
    def n_vertices(self) -> int:
        return N_VERTICES

    def split(self, shape: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        shape = torch.as_tensor(shape, dtype=self.anny.dtype, device=self.device)
        check_shape(shape)
        return shape[:, :N_PHENOTYPES], shape[:, N_PHENOTYPES:]

    @torch.no_grad()
    def forward(
        self,
        shape: torch.Tensor | np.ndarray,
        pose: dict[str, torch.Tensor] | None = None,
        rest_offsets: np.ndarray | None = None,
    ) -> BodyOutput:
        """Posed and rest vertices of a batch of shapes ``(B, N_SHAPE)``.

        ``rest_offsets`` ``(B, V, 3)``, metres: a displacement of the rest mesh that no shape
        parameter can express (an off-model body), posed with the same skinning as the mesh.
        """
        phen, local = self.split(shape)
        with self._anny_lock:
            out = self.anny(pose_parameters=pose or None, phenotype_kwargs=phen, local_changes_kwargs=local)
        verts = out["vertices"]
        rest = out["rest_vertices"].expand_as(verts)
        if rest_offsets is not None:
            d = torch.as_tensor(rest_offsets, dtype=verts.dtype, device=verts.device).expand_as(verts)
            rest = rest + d
            verts = verts + self._skin_directions(out, d)
        return BodyOutput(
            vertices=verts.float().cpu().numpy(),
            rest_vertices=rest.float().cpu().numpy(),
            faces=self.faces,
        )

    @torch.no_grad()
    def rest_vertices(self, shape: torch.Tensor | np.ndarray) -> np.ndarray:
        """Rest-pose vertices ``(B, V, 3)``, float32: :meth:`forward`'s ``rest_vertices`` without
        posing and skinning the mesh.

        Anny's own blend (template + blendshapes . coefficients, float64) of the vectorised
        coefficients: the same vertices, 2.2-2.7x faster for the 21 bodies of a refit step
        (bodyshape/refit.py; every page request runs two; ``python -m
        training.body_model_bench``). Pure PyTorch, so it needs no Anny lock.
        """
        shape = torch.as_tensor(shape, dtype=self.anny.dtype, device=self.device)
        check_shape(shape)
        return self.anny.get_rest_vertices(self.coefficients(shape)).float().cpu().numpy()

    def _vertex_rotations(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, V, 3, 3): how each vertex's skinning turns a small change of the rest surface.
        Linear blend skinning is linear in the rest position, so a displacement moves by the
        weighted bone rotations."""
        skin = out["bone_poses"] @ torch.linalg.inv(out["rest_bone_poses"])  # (B, J, 4, 4)
        rot = skin[..., :3, :3]
        idx = self.anny.vertex_bone_indices.long()  # (V, K)
        w = self.anny.vertex_bone_weights.to(rot.dtype)  # (V, K)
        return torch.einsum("vk,bvkij->bvij", w, rot[:, idx])

    def _skin_directions(self, out: dict[str, torch.Tensor], d: torch.Tensor) -> torch.Tensor:
        """Rest-pose displacements ``d`` (B, V, 3) carried into the pose."""
        return torch.einsum("bvij,bvj->bvi", self._vertex_rotations(out).to(d.dtype), d)

    @torch.no_grad()
    def posed_linearisation(
        self, shape: torch.Tensor | np.ndarray, pose: dict[str, torch.Tensor] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Posed vertices (B, V, 3) and the skinning rotations (B, V, 3, 3) of shapes
        (B, N_SHAPE): a small change ``d`` of a rest surface moves the posed one by ``rot @ d``
        (the skeleton's own move with the shape left out)."""
        phen, local = self.split(shape)
        with self._anny_lock:
            out = self.anny(pose_parameters=pose or None, phenotype_kwargs=phen, local_changes_kwargs=local)
        rot = self._vertex_rotations(out)
        return out["vertices"].float().cpu().numpy(), rot.float().cpu().numpy()

    def rest_vertices_torch(
        self, shape: torch.Tensor, vertex_index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Differentiable rest-pose vertices ``(B, V', 3)``, float32, for a vertex loss.

        Rest vertices are linear in the blendshape coefficients, so a subset of vertices
        costs one small matrix product: cheap enough for every training step.
        """
        return apply_blendshapes(*self.vertex_basis(vertex_index), self.blendshape_coefficients(shape))

    def blendshape_coefficients(self, shape: torch.Tensor) -> torch.Tensor:
        """Differentiable blendshape weights ``(B, C)`` of shapes ``(B, N_SHAPE)`` (Anny's dtype).

        Rest vertices are ``template + blendshapes . coefficients``; training computes the
        product itself on its own device (see ``training.train.Losses``).
        """
        check_shape(shape)
        return self.coefficients(shape)

    def vertex_basis(self, vertex_index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Template ``(V', 3)`` and blendshapes ``(C, V', 3)``, float32, of a vertex subset (cached)."""
        key = None if vertex_index is None else tuple(vertex_index.tolist())
        with self._lock:
            if key not in self._basis_cache:
                t = self.anny.template_vertices.float()
                b = self.anny.blendshapes.float()
                if vertex_index is not None:
                    idx = vertex_index.to(t.device)
                    t, b = t[idx], b[:, idx]
                self._basis_cache[key] = (t.contiguous(), b.contiguous())
            return self._basis_cache[key]

    def sample_shapes(self, n: int, seed: int) -> np.ndarray:
        """``n`` plausible adult shape vectors, reproducible from ``seed``. (n, N_SHAPE)."""
        if n < 0:
            raise BodyShapeError(f"number of shapes must be >= 0, got {n}")
        # The sampler draws from torch's global RNG: seed it in a forked state, one thread at a
        # time, so concurrent callers neither disturb each other nor the caller's RNG.
        with self._lock, torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            _, phen = self._sampler.sample(n)
        rng = np.random.default_rng(seed)
        pheno = np.stack([phen[k].cpu().numpy() for k in PHENOTYPE_LABELS], axis=1)
        local = np.clip(
            rng.normal(0.0, LOCAL_CHANGE_STD, (n, len(LOCAL_CHANGE_LABELS))),
            -LOCAL_CHANGE_CLIP,
            LOCAL_CHANGE_CLIP,
        )
        return np.concatenate([pheno, local], axis=1).astype(np.float32)


def apply_blendshapes(template: torch.Tensor, blend: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """Rest vertices ``(B, V', 3)`` = template ``(V', 3)`` + blendshapes ``(C, V', 3)`` . coefficients ``(B, C)``."""
    return template[None] + torch.einsum("cpd,bc->bpd", blend, coeffs.float())


_MODELS: Shared[BodyModel] = Shared(BodyModel, "body model")


def get_body_model(device: str | torch.device = "cpu") -> BodyModel:
    """The process-wide body model on ``device``: one copy per device, built on first use.

    Never move a shared model to another device (``model.anny.to(...)``): every other user
    of it would get tensors on the wrong device. Ask for the device's own copy instead.
    """
    return _MODELS.get(str(torch.device(device)))
