"""Evaluation splits that leave the training distribution on purpose.

Every accuracy number measured only on the training distribution flatters the product. Each
split here is generated from its own seed (never used for training data, which uses seeds 0
and 3), deterministically, and cached under ``data/eval/``:

==================  =========================================================================
in_distribution     the held-out test set (``bodyshape generate --n 1000 --seed 1 --silhouettes coverage``): capture
                    pose, training jitter, training mask noise.
stance              feet from together (thighs touching, then overlapping: -12 deg per leg) to
                    wide (+15 deg), well beyond the training jitter (SD 3 deg).
arms                arm abduction 20-70 deg from the body (rest: 45), elbows bent 0-20 deg, arms
                    swung forwards/backwards +-15 deg, whole-body yaw +-10 deg, lean +-5 deg.
off_model           bodies no shape vector can express: the rest surface pushed in or out by up
                    to 3 cm along its normal with smooth Gaussian bumps at the belly, chest,
                    hips, buttocks and thighs (arms left alone), posed with Anny's own skinning;
                    the truth is measured on the deformed mesh with the same code.
photo_bare          synthetic photo pairs (:mod:`demo.synthetic`: shaded person, room,
                    JPEG) of bare bodies through rembg and the page's normalisation
                    (:func:`bodyshape.photo.photo_to_silhouette`), person 65-90% of the frame.
photo               the same with hair and a loose-clothing margin (0.5-1.5 cm) on the torso:
                    what a photo of a dressed person adds (a margin m adds 2 pi m to a girth).
repeatability       each of 30 photo pairs re-framed 10 times as a second capture would differ
                    (scale 0.6-1.0, camera roll SD 2 deg, shift, brightness +-20%, JPEG
                    60-95: :class:`Reframing`), the same person in the same clothes and room
                    every time; reported as the SD of each measurement per person.
==================  =========================================================================

The truth is always the measurement of the true rest mesh at its true height, and every model
gets the true height, as the page does with the typed height.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bodyshape.body_model import BodyModel, PoseOffsets, get_body_model
from bodyshape.errors import BodyShapeError
from bodyshape.measurements import ARM_BONES
from training.config import DataConfig

IN_DISTRIBUTION, STANCE, ARMS, OFF_MODEL, PHOTO_BARE, PHOTO, REPEATABILITY = (
    "in_distribution", "stance", "arms", "off_model", "photo_bare", "photo", "repeatability",
)
SPLITS = (IN_DISTRIBUTION, STANCE, ARMS, OFF_MODEL, PHOTO_BARE, PHOTO, REPEATABILITY)
#: Seeds of the splits: none is a training-data seed (0, 3) and each split has its own.
SPLIT_SEEDS = {
    IN_DISTRIBUTION: 1, STANCE: 1101, ARMS: 1102, OFF_MODEL: 1103, PHOTO: 1104, REPEATABILITY: 1105, PHOTO_BARE: 1106,
}
#: Bodies per split (repeatability: persons, each photographed REFRAMES times).
SPLIT_SIZES = {
    IN_DISTRIBUTION: 1000, STANCE: 300, ARMS: 300, OFF_MODEL: 300, PHOTO_BARE: 200, PHOTO: 200, REPEATABILITY: 30,
}
REFRAMES = 10
#: What the people of each split wear, as they would tell the page (bodyshape/clothing.py):
#: the dressed photo splits have a 0.5-1.5 cm cloth margin (:func:`dress`); all others "tight".
SPLIT_CLOTHING = {PHOTO: "fitted", REPEATABILITY: "fitted"}
#: Largest off-model displacement of the surface, metres.
MAX_DEFORMATION_M = 0.03
#: Version of the cached splits: 2 keeps coverage canvases (sub-pixel edges; 1 kept 0/1 bodies).
FORMAT = 2
#: Splits whose cache has a later version than FORMAT. Repeatability 3: one scene per person
#: (version 2 drew a new room and new clothes colours for every re-framing).
SPLIT_FORMATS = {REPEATABILITY: 3}


def segmentation_tag() -> str:
    """Part of the names of cached photo canvases: the segmentation's version
    (:data:`bodyshape.photo.SEGMENTATION_VERSION`; none was named while it was 1)."""
    from bodyshape.photo import SEGMENTATION_VERSION

    return f"s{SEGMENTATION_VERSION}" if SEGMENTATION_VERSION > 1 else ""


def cache_version(name: str) -> str:
    """The version part of a cached split's name: its format and, for the photo splits, the
    segmentation's."""
    return f"v{SPLIT_FORMATS.get(name, FORMAT)}" + (segmentation_tag() if name in (PHOTO_BARE, PHOTO, REPEATABILITY) else "")


@dataclass
class Split:
    """One evaluation split: network inputs and the truth they must reproduce."""

    name: str
    front: np.ndarray  # (N, H, W) uint8 coverage canvases, normalised
    side: np.ndarray  # (N, H, W) uint8 coverage canvases, normalised
    height: np.ndarray  # (N,) metres, the true height (what the user types)
    truth: np.ndarray  # (N, M) metres, measurements of the true rest mesh (MEASUREMENT_NAMES)
    person: np.ndarray  # (N,) int: which body each row shows (repeatability: 10 rows a body)


# ----------------------------------------------------------------------------- rendered splits
def _uniform(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    return rng.uniform(lo, hi, n)


def stance_offsets(rng: np.random.Generator, n: int) -> dict[str, PoseOffsets]:
    """Legs from together (thighs overlapping) to wide; the same stance in both photos."""
    spread = _uniform(rng, -12.0, 15.0, n)
    return {view: PoseOffsets(leg_spread=spread) for view in ("front", "side")}


def arm_offsets(rng: np.random.Generator, n: int) -> dict[str, PoseOffsets]:
    """Arms and posture: abduction 20-70 deg (front), elbows, swing (side), lean (both)."""
    lean = _uniform(rng, -5.0, 5.0, n)
    front = PoseOffsets(arm_abduction=_uniform(rng, -25.0, 25.0, n), elbow=_uniform(rng, 0.0, 20.0, n), torso_lean=lean)
    side = PoseOffsets(arm_swing=_uniform(rng, -15.0, 15.0, n), elbow=_uniform(rng, 0.0, 20.0, n), torso_lean=lean)
    return {"front": front, "side": side}


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit area-weighted vertex normals (V, 3) of one mesh."""
    tri = vertices[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    vn = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(vn, faces[:, k], fn)
    return vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)


def _arm_vertices(model: BodyModel) -> np.ndarray:
    """(V,) bool: vertices skinned mainly to an arm bone."""
    return np.array([model.bone_labels[b].startswith(ARM_BONES) for b in model.dominant_bone])


def _body_weight(model: BodyModel) -> np.ndarray:
    """(V,) in [0, 1]: 1 minus each vertex's skinning weight on arm bones, so that a bump fades
    out smoothly at the shoulders and armpits instead of stopping at a seam."""
    is_arm = np.array([lbl.startswith(ARM_BONES) for lbl in model.bone_labels])
    idx = model.anny.vertex_bone_indices.cpu().numpy()
    w = model.anny.vertex_bone_weights.cpu().numpy()
    return 1.0 - (w * is_arm[idx]).sum(1)


def _bump_centres(v: np.ndarray, body: np.ndarray) -> list[np.ndarray]:
    """Belly, chest, buttocks, both hips and both thighs of one rest mesh (metres, Z up, -Y front)."""
    z = v[:, 2]
    floor, stature = z.min(), np.ptp(z)

    def extreme(level: float, score: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
        band = body & (np.abs(z - (floor + level * stature)) < 0.02 * stature)
        if where is not None:
            band &= where
        idx = np.flatnonzero(band)
        return v[idx[np.argmax(score[idx])]]

    x, y = v[:, 0], v[:, 1]
    centre = np.abs(x) < 0.04
    return [
        extreme(0.58, -y, centre),  # belly: frontmost near the mid-line
        extreme(0.72, -y),  # chest / bust
        extreme(0.50, y, centre),  # buttocks: backmost
        extreme(0.52, x),  # left hip (+x)
        extreme(0.52, -x),  # right hip
        extreme(0.43, -y, x > 0),  # front of the left thigh
        extreme(0.43, -y, x < 0),  # front of the right thigh
    ]


#: Where the random bumps of training bodies sit (:func:`random_bump_centres`): the torso and
#: thighs, as shares of the stature above the floor, and how many a body gets.
RANDOM_BUMP_LEVELS = (0.35, 0.78)
RANDOM_BUMPS = (3, 10)


def random_bump_centres(v: np.ndarray, body: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """3-10 surface points drawn anywhere on the torso and thighs of one rest mesh (not the arms):
    the bumps of off-model *training* bodies (``bodyshape generate --off-model``), so that they
    are not the seven fixed sites of the off_model split (:func:`_bump_centres`)."""
    z = v[:, 2]
    level = (z - z.min()) / np.ptp(z)
    idx = np.flatnonzero(body & (level >= RANDOM_BUMP_LEVELS[0]) & (level <= RANDOM_BUMP_LEVELS[1]))
    k = int(rng.integers(RANDOM_BUMPS[0], RANDOM_BUMPS[1] + 1))
    return list(v[rng.choice(idx, size=k, replace=False)])


def smooth_deformation(model: BodyModel, rest: np.ndarray, rng: np.random.Generator, random_sites: bool = False) -> np.ndarray:
    """Displacements (V, 3), metres, of one rest mesh (V, 3): smooth bumps, at most MAX_DEFORMATION_M.

    Each region gets a Gaussian bump along the surface normal, amplitude uniform in
    +-3 cm and radius 6-12 cm; the arms do not move (faded out by their skinning weight).
    Bumps that overlap add, so the sum is clipped to the 3 cm limit. The regions are the
    belly, chest, buttocks, hips and thighs (the off_model split), or with ``random_sites``
    points drawn anywhere on the torso and thighs (:func:`random_bump_centres`: training rows).
    """
    v = rest.astype(np.float64)
    amount = np.zeros(len(v))
    body = ~_arm_vertices(model)
    for c in random_bump_centres(v, body, rng) if random_sites else _bump_centres(v, body):
        a, r = rng.uniform(-MAX_DEFORMATION_M, MAX_DEFORMATION_M), rng.uniform(0.06, 0.12)
        amount += a * np.exp(-np.sum((v - c) ** 2, axis=1) / (2 * r * r))
    amount = np.clip(amount, -MAX_DEFORMATION_M, MAX_DEFORMATION_M) * _body_weight(model)
    return (amount[:, None] * vertex_normals(v, model.faces)).astype(np.float32)


def true_rest_meshes(name: str, model: BodyModel, shapes: np.ndarray, seed: int, first: int = 0) -> np.ndarray:
    """Rest meshes (B, V, 3) of bodies ``first ...`` of a split: Anny's, deformed for off_model.

    Each off-model body's deformation is drawn from its own seed, so the truth can be
    recomputed from the shapes alone (the cache keeps silhouettes and shapes, not meshes:
    a change of a measurement definition never leaves a stale truth behind).
    """
    rest = model.forward(shapes).rest_vertices
    if name == OFF_MODEL:
        for k in range(len(rest)):
            rng = np.random.default_rng(np.random.SeedSequence([seed, 11, first + k]))
            rest[k] += smooth_deformation(model, rest[k], rng)
    return rest


def _render_split(name: str, n: int, seed: int, model: BodyModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(front, side, shapes) of a split rendered like the training data but for its own factor."""
    from training.generate import render_batch

    cfg = DataConfig()
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    shapes = model.sample_shapes(n, seed=seed)
    fronts, sides = [], []
    for c0 in range(0, n, 50):
        chunk = shapes[c0 : c0 + 50]
        b = len(chunk)
        offsets, deltas, yaw = None, None, None
        if name == STANCE:
            offsets = stance_offsets(rng, b)
        elif name == ARMS:
            offsets, yaw = arm_offsets(rng, b), _uniform(rng, -10.0, 10.0, b)
        elif name == OFF_MODEL:
            deltas = true_rest_meshes(name, model, chunk, seed, c0) - model.forward(chunk).rest_vertices
        f, s, _ = render_batch(model, chunk, cfg, rng, offsets=offsets, rest_offsets=deltas, extra_yaw_deg=yaw)
        fronts.append(f)
        sides.append(s)
    return np.concatenate(fronts), np.concatenate(sides), shapes


# ----------------------------------------------------------------------------- photo splits
#: The loose-clothing margin of the dressed splits, metres at a 1.7 m scale (uniform).
CLOTH_MARGIN_M = (0.005, 0.015)


def cloth_margin_px(body_px: int, rng: np.random.Generator) -> int:
    """The cloth margin :func:`dress` puts on a view whose body is ``body_px`` rows tall, pixels
    (drawn once per view: the front and the side of one person get their own)."""
    return max(1, round(rng.uniform(*CLOTH_MARGIN_M) / 1.7 * body_px))


#: The rows the dressed splits' cloth covers, shares of the body's height from the top of the
#: head: a T-shirt's neckline to the hem of shorts just below the crotch.
CLOTHED_ROWS = (0.19, 0.60)


def dress(mask: np.ndarray, view: str, rng: np.random.Generator, rows: tuple[float, float] = CLOTHED_ROWS) -> np.ndarray:
    """Hair and a loose-clothing margin (0.5-1.5 cm) on the torso of a rendered mask (a copy);
    ``rows``: where the cloth begins and ends, shares of the body's height from the top."""
    import cv2

    from bodyshape.augment import add_hair

    out = mask.copy()
    body = np.flatnonzero(out.any(1))
    top, h = body[0], body[-1] - body[0]
    px = cloth_margin_px(h, rng)
    torso = slice(top + int(rows[0] * h), top + int(rows[1] * h))
    grown = cv2.dilate(out, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1)))
    out[torso] = grown[torso]
    add_hair(out, view, rng)
    return out


@dataclass(frozen=True)
class Reframing:
    """How one capture of a photo pair differs from another: per view (front, side), the
    body's height over the photo's, its horizontal centre and how far it sits lower (shares of
    the photo), the camera roll (degrees) and a brightness factor; the JPEG quality of both."""

    body_frac: tuple[float, float]
    center: tuple[float, float]
    drop: tuple[float, float]
    roll_deg: tuple[float, float]
    brightness: tuple[float, float]
    jpeg_quality: int

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Reframing:
        """Scale 0.6-1.0 of a body at 0.9 of the photo, a shift of up to 6% sideways and 4%
        down, roll SD 2 deg, brightness +-20%, JPEG quality 60-95 (issue #12)."""
        def two(values: np.ndarray) -> tuple[float, float]:
            return float(values[0]), float(values[1])

        return cls(body_frac=two(0.9 * rng.uniform(0.6, 1.0, 2)), center=two(0.5 + rng.uniform(-0.06, 0.06, 2)),
                   drop=two(rng.uniform(0.0, 0.04, 2)), roll_deg=two(rng.normal(0.0, 2.0, 2)),
                   brightness=two(rng.uniform(0.8, 1.2, 2)), jpeg_quality=int(rng.integers(60, 96)))  # fmt: skip


def reframe(photo_masks: tuple[np.ndarray, np.ndarray], scene: int, how: Reframing) -> tuple[np.ndarray, np.ndarray]:
    """A capture of the same person, in the same clothes and room (``scene``: the seed of the
    room and the clothes colours, :func:`demo.synthetic.compose_photo`), framed as ``how``."""
    import cv2

    from demo.synthetic import compose_photo

    photos = []
    for v, mask in enumerate(photo_masks):
        img = compose_photo(mask, np.random.default_rng([scene, v]), body_frac=how.body_frac[v],
                            centers=[how.center[v]], shift_y=-how.drop[v], jpeg_quality=95)  # fmt: skip
        h, w = img.shape[:2]
        rot = cv2.getRotationMatrix2D((w / 2, h / 2), how.roll_deg[v], 1.0)
        img = cv2.warpAffine(img, rot, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        img = np.clip(img.astype(np.float32) * how.brightness[v], 0, 255).astype(np.uint8)
        _, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, how.jpeg_quality])
        photos.append(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy())
    return photos[0], photos[1]


def dressed_masks(shape: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A body's front and side capture-pose masks with hair and a cloth margin (:func:`dress`)."""
    from demo.synthetic import render_masks

    return tuple(dress(m, view, rng) for m, view in zip(render_masks(shape), ("front", "side"), strict=True))


def page_silhouettes(photos: tuple[np.ndarray, np.ndarray], segmenter=None, zoom: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A (front, side) photo pair -> the two canvases the page makes of it: rembg (or
    ``segmenter``; ``zoom``: :func:`bodyshape.photo.person_probability`), the person checks, the
    normalisation, the view-pair check."""
    from bodyshape.photo import check_view_pair, photo_to_silhouette

    front, side = (photo_to_silhouette(p, view, segmenter, zoom) for p, view in zip(photos, ("front", "side"), strict=True))
    check_view_pair(front, side)
    return front.silhouette, side.silhouette


def _photo_split(name: str, n: int, seed: int, model: BodyModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(front, side, shapes) of photos of known bodies through rembg and the page's normalisation;
    repeatability has REFRAMES rows a body, one after another."""
    from tqdm import tqdm

    from demo.synthetic import compose_photo, render_masks

    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    shapes = model.sample_shapes(n, seed=seed)
    reframes = REFRAMES if name == REPEATABILITY else 1
    fronts, sides = [], []
    for i in tqdm(range(n), desc=name, unit="body"):
        masks = render_masks(shapes[i]) if name == PHOTO_BARE else dressed_masks(shapes[i], rng)
        scene = int(rng.integers(2**32)) if name == REPEATABILITY else 0  # one room and outfit a person
        for _ in range(reframes):
            if name == REPEATABILITY:
                pair = reframe(masks, scene, Reframing.draw(rng))
            else:
                pair = tuple(compose_photo(m, rng, body_frac=rng.uniform(0.65, 0.9)) for m in masks)
            front, side = page_silhouettes(pair)
            fronts.append(front)
            sides.append(side)
    return np.stack(fronts), np.stack(sides), np.repeat(shapes, reframes, axis=0)


def _in_distribution(n: int, seed: int, folder: Path) -> Split:
    """Today's held-out test set (the same seed and generator give the same bytes)."""
    from bodyshape.measurements import get_measurer
    from training.dataset import load_dataset
    from training.evaluate import true_meshes
    from training.generate import generate

    if not (folder / "manifest.json").exists():
        generate(test_set_config(n, seed), folder)
    ds = load_dataset(folder, limit=n)
    truth = get_measurer().batch(true_meshes(ds))
    return Split(IN_DISTRIBUTION, ds.canvases(ds.front), ds.canvases(ds.side), ds.height.copy(), truth, np.arange(len(ds)))


def test_set_config(n: int, seed: int) -> DataConfig:
    """The held-out test set's configuration: the training data's, with the coverage canvases
    the page reads stored (``bodyshape generate --silhouettes coverage``)."""
    return dataclasses.replace(DataConfig(), n=n, seed=seed, silhouettes="coverage")


def _same_test_set(test_set: str | Path | None, n: int, seed: int) -> Path | None:
    """``test_set`` if it is a complete dataset of at least ``n`` pairs generated with ``seed``
    and the default data configuration (then it holds exactly the in-distribution split)."""
    if test_set is None or not (Path(test_set) / "manifest.json").exists():
        return None
    from training.config import config_differences, data_config_to_json

    manifest = json.loads((Path(test_set) / "manifest.json").read_text())
    stored = manifest.get("config", {})
    want = data_config_to_json(test_set_config(stored.get("n", -1), seed))
    same = not config_differences(stored, want)  # the generator's own comparison of manifests
    return Path(test_set) if manifest.get("complete") and same and want["n"] >= n else None


# ----------------------------------------------------------------------------- cache
def _split_from_arrays(name: str, seed: int, front: np.ndarray, side: np.ndarray, shapes: np.ndarray) -> Split:
    """A split with its truth measured now, with the current measurement code."""
    from bodyshape.measurements import MEASUREMENT_NAMES, get_measurer

    model = get_body_model()
    reframes = REFRAMES if name == REPEATABILITY else 1
    bodies = shapes[::reframes]
    truth = np.concatenate([
        get_measurer().batch(true_rest_meshes(name, model, bodies[i : i + 50], seed, i)) for i in range(0, len(bodies), 50)
    ])
    person = np.repeat(np.arange(len(bodies)), reframes)
    truth = truth[person]
    height = truth[:, MEASUREMENT_NAMES.index("height")].copy()
    return Split(name, front, side, height, truth, person)


def load_split(
    name: str, folder: str | Path, n: int | None = None, seed: int | None = None, test_set: str | Path | None = None
) -> Split:
    """The split ``name`` from ``folder`` (``data/eval``), generated there first if missing.

    The cache keeps the silhouettes and the true shape vectors; the truth is measured when the
    split is loaded, so it always follows the current measurement definitions. For
    ``in_distribution``, ``test_set`` is an existing held-out set made with the same seed
    (``data/test``), used instead of a copy.
    """
    if name not in SPLITS:
        raise BodyShapeError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
    folder = Path(folder)
    n = SPLIT_SIZES[name] if n is None else n
    seed = SPLIT_SEEDS[name] if seed is None else seed
    if name == IN_DISTRIBUTION:
        return _in_distribution(n, seed, _same_test_set(test_set, n, seed) or folder / f"{name}_seed{seed}_coverage")
    path = folder / f"{name}_n{n}_seed{seed}_{cache_version(name)}.npz"
    if not path.exists():
        from training.generate import write_npz

        builder = _photo_split if name in (PHOTO_BARE, PHOTO, REPEATABILITY) else _render_split
        front, side, shapes = builder(name, n, seed, get_body_model())
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        write_npz(tmp, {"front": front, "side": side, "shape": shapes})
        tmp.replace(path)
    with np.load(path) as z:
        return _split_from_arrays(name, seed, z["front"], z["side"], z["shape"])
