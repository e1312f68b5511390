"""Capture feedback: was the photo pair taken in the pose the network was trained on?

Computed from the two normalised silhouettes (what the network sees, 128x96) and, for the
framing, from the photo's size; numpy on small masks, well under a millisecond a check.

    checks = check_capture(front, side)             # PhotoSilhouette pair -> [CaptureCheck]
    [c.message for c in checks if not c.passed]     # plain sentences: what to do

Each check measures one feature (the arms' angle, the gap between the legs, ...) and passes
when it lies inside the range of the *training* captures: the thresholds are the 0.5th and
99.5th percentiles of the feature over renders of the jittered capture pose with the
training camera and mask noise (``bodyshape capture-thresholds``, :mod:`demo.capture_thresholds`;
numbers and detection rates in docs/capture.md). A failed check warns; the result is still
shown. Refusals (no person, cut off, several people, swapped photos) stay where they are,
in :mod:`bodyshape.photo`.

The guide text (:data:`GUIDE`) and the messages say the same things: each message ends with
its check's instruction, and the page's capture guide is made of the same instructions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bodyshape.silhouette import as_canvases, body_pixels, bounding_box

# ----------------------------------------------------------------------------- what to do
#: The capture guide, one instruction per aspect. The page's guide (demo/page.py) and every
#: warning message use these very sentences.
GUIDE: dict[str, str] = {
    "front_arms": "hold your arms straight, about 45° away from the body",
    "front_feet": "stand with your feet hip-width apart",
    "front_tilt": "stand straight and hold the phone upright, not tilted",
    "front_turned": "face the camera squarely, toes pointing at it",
    "side_turned": "turn fully side-on: face the right edge of the picture, right shoulder toward the camera",
    "side_arms": "let your arms hang straight down along the body",
    "side_lean": "stand upright without leaning, looking ahead",
    "framing": "fill most of the picture's height with your whole body, head to feet, with some space around it",
    "same_person": "take both photos of the same person, in the same clothes, one right after the other",
    "side_outline": "stand in front of a plain wall with nothing right behind you, long hair tied back",
}


@dataclass(frozen=True)
class CheckSpec:
    """One check: what it measures, its accepted range and what it tells the user."""

    name: str
    view: str  # "front", "side" or "pair"
    feature: str  # what ``value`` is, for the JSON download and the docs
    unit: str
    low: float | None  # value < low fails (None: no lower limit)
    high: float | None  # value > high fails
    too_low: str  # the problem when below ``low``
    too_high: str  # the problem when above ``high``

    def message(self, value: float) -> str:
        """The warning for ``value`` (outside the range): problem, then the guide's instruction."""
        problem = self.too_low if self.low is not None and value < self.low else self.too_high
        where = {"front": "Front photo", "side": "Side photo", "pair": "Front and side photos"}[self.view]
        return f"{where}: {problem.format(value=value)}; {GUIDE[self.name]}."


# Thresholds: printed by `bodyshape capture-thresholds` (docs/capture.md: 400 bodies rendered as
# the training data is, seed 9100; 0.5th / 99.5th percentiles, rounded outwards). Units: degrees,
# or fractions of the body's height in the silhouette.
ARM_ANGLE_DEG = (22.8, 57.5)
#: Mean gap between the legs; the 0.5th percentile is 0 (heavy thighs touch even in the capture
#: pose), so "too close" is a gap under 0.5% of the height: legs touching all the way down.
LEG_GAP = (0.005, 0.207)
FRONT_TILT_DEG = 4.3
#: Mean sideways offset of the two feet from their shins (:func:`feet_turn`), / body height.
FRONT_FEET_TURN = 0.0141
SIDE_TURN_DEG = 31.4
SIDE_ARM_REACH = 1.52
SIDE_LEAN_DEG = (-7.6, 8.9)
PAIR_DISTANCE = 3.9
#: Narrowest neck row / deepest head row in profile (:func:`neck_depth`): a neck as deep as the
#: head means the outline holds something else, merged by the segmentation (docs/capture.md).
SIDE_NECK_DEPTH = 0.94
#: Mean and inverse covariance of log(front width / side depth) at PAIR_LEVELS (chest, waist,
#: hip) over the same renders (one person in both photos); PAIR_DISTANCE bounds the
#: Mahalanobis distance from them.
PAIR_MEAN = (0.5975, 0.2165, 0.3888)
PAIR_INV_COV = ((19.037, -9.661, -1.211), (-9.661, 73.207, -43.221), (-1.211, -43.221, 62.496))
#: Smallest person height in the segmentation's pixels (:func:`segmentation_height_px`): below
#: about 40% of a portrait photo's height (128 of rembg's 320 px) the photo silhouettes lose
#: detail (IoU with the true one 0.91 at 36%, 0.94 at 42-60%, 0.97 at 82%), and at 31% rembg
#: merged a third of the people with the room (refused). Derivation: docs/capture.md.
MIN_SEGMENTATION_PX = 128.0

#: rembg's u2netp runs on a 320x320 resize of the whole photo: the mask cannot hold more detail
#: than the person's height in those pixels, however large the photo.
REMBG_INPUT_PX = 320
#: Rows (fractions of the body height from the top of the head) where the checks look.
HEAD_ROWS = (0.01, 0.09)
UPPER_BODY, LOWER_BODY = 0.45, 0.55  # front tilt: centroids above / below these rows
ARM_ROWS = (0.15, 0.72)
LEG_ROWS = (0.60, 0.95)
KNEE_ROWS = (0.70, 0.80)  # the turn check: above the feet, where shoes and the floor do not reach
#: Legs touching from this row down (knees, shins) close the gap below too: crossed legs show
#: an "X" whose lower half is open, which is still feet too close together.
KNEES_TOUCH_FROM = 0.72
SHIN_ROWS = (0.86, 0.90)
#: The front turn check: each leg's centre in TURN_SHIN_ROWS, its foot's pixels in TURN_FOOT_ROWS
#: (ankle to sole; chosen on the yaw sweeps of docs/capture.md, higher or lower bands separate less).
TURN_SHIN_ROWS = (0.82, 0.89)
TURN_FOOT_ROWS = (0.90, 1.0)
TOE_ROWS = (0.97, 1.0)
SIDE_HAND_ROWS = (0.42, 0.60)
SIDE_CHEST_ROWS = (0.25, 0.32)
PAIR_LEVELS = (0.27, 0.38, 0.48)  # chest, waist, hip
#: The head and the neck below the chin in profile (side_outline).
SIDE_HEAD_ROWS = (0.02, 0.08)
SIDE_NECK_ROWS = (0.09, 0.17)
#: Shoulder joint relative to the head's centre line and the top of the head, fractions of the
#: body height (Anny, capture pose): the arm's angle is measured from there to the hand.
SHOULDER = (0.10, 0.18)

SPECS: dict[str, CheckSpec] = {
    s.name: s
    for s in (
        CheckSpec("front_arms", "front", "angle between each arm and the body, from the shoulder to the hand",
                  "deg", *ARM_ANGLE_DEG, "your arms are too close to the body",
                  "your arms are raised too far from the body"),
        CheckSpec("front_feet", "front", "mean gap between the legs from mid-thigh to the ankles / body height",
                  "", *LEG_GAP, "your feet are too close together (legs touching)",
                  "your feet are too far apart"),
        CheckSpec("front_tilt", "front", "tilt of the line from the legs' centroid to the upper body's, from vertical", "deg",
                  None, FRONT_TILT_DEG, "", "the body looks tilted (leaning sideways, or the camera held crooked)"),
        CheckSpec("front_turned", "front", "mean sideways offset of the two feet from their shins / body height "
                  "(both feet to the same side: the body turned)", "", None, FRONT_FEET_TURN, "",
                  "your body looks turned away from the camera (both feet point to the same side)"),
        CheckSpec("side_turned", "side", "estimated turn away from a true profile, from how far apart the two legs show",
                  "deg", None, SIDE_TURN_DEG, "", "you are not fully side-on (turned toward the camera)"),
        CheckSpec("side_arms", "side", "widest row at hand height / chest depth", "", None, SIDE_ARM_REACH, "",
                  "your arms are in front of or behind the body"),
        CheckSpec("side_lean", "side", "forward lean of the line from the ankles to the head, from vertical", "deg",
                  *SIDE_LEAN_DEG, "you lean backwards (about {value:.0f}°)", "you lean forwards (about {value:.0f}°)"),
        CheckSpec("framing", "pair", "person's height in the segmentation's pixels (the smaller photo)", "px",
                  MIN_SEGMENTATION_PX, None, "the person is too small in the picture (or the photo's resolution too low)", ""),
        CheckSpec("same_person", "pair", "Mahalanobis distance of the front-width / side-depth ratios at chest, waist "
                  "and hip from those of one person", "", None, PAIR_DISTANCE, "",
                  "the body's widths in the front photo do not match its depths in the side photo: they may show different people"),
        CheckSpec("side_outline", "side", "narrowest depth of the neck / deepest row of the head, in profile", "",
                  None, SIDE_NECK_DEPTH, "", "the outline at your head and neck is not a head above a narrower neck: "
                  "something behind you (furniture, a door, a bag, long hair) was cut out as part of you, or your head "
                  "was not found"),
    )
}  # fmt: skip


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Mark:
    """Where a problem is on a view's silhouette (pixels of the 128x96 canvas): a box or a line."""

    view: str
    kind: str  # "box" (x0, y0, x1, y1) or "line" (x0, y0, x1, y1)
    xyxy: tuple[float, float, float, float]


@dataclass(frozen=True)
class CaptureCheck:
    """One check's outcome; ``message`` is "" when it passed."""

    name: str
    view: str
    passed: bool
    value: float
    low: float | None
    high: float | None
    unit: str
    message: str
    marks: tuple[Mark, ...] = ()

    def as_json(self) -> dict:
        return {"check": self.name, "view": self.view, "passed": self.passed, "value": round(self.value, 3),
                "low": self.low, "high": self.high, "unit": self.unit, "feature": SPECS[self.name].feature,
                "message": self.message}  # fmt: skip


def _judge(name: str, value: float, marks: tuple[Mark, ...]) -> CaptureCheck:
    spec = SPECS[name]
    ok = not math.isfinite(value) or (
        (spec.low is None or value >= spec.low) and (spec.high is None or value <= spec.high)
    )
    return CaptureCheck(name, spec.view, ok, float(value), spec.low, spec.high, spec.unit,
                        "" if ok else spec.message(value), () if ok else marks)  # fmt: skip


# ----------------------------------------------------------------------------- features
class _Body:
    """A normalised silhouette's body: rows by fraction of its height, the head's centre line."""

    def __init__(self, sil: np.ndarray) -> None:
        self.s = body_pixels(sil)
        top, bottom, _, _ = bounding_box(self.s)
        self.top, self.h = top, bottom - top
        self.cols = np.arange(self.s.shape[1])
        self.c = self.centroid_x(*HEAD_ROWS)

    def y(self, t: float) -> float:
        return self.top + t * self.h

    def rows(self, a: float, b: float) -> np.ndarray:
        return self.s[self.top + round(a * self.h) : max(self.top + round(b * self.h), self.top + round(a * self.h) + 1)]

    def centroid_x(self, a: float, b: float, cols: slice = slice(None)) -> float:
        _, xs = np.nonzero(self.rows(a, b)[:, cols])
        start = cols.start or 0
        return float(xs.mean() + start) if xs.size else math.nan

    def extents(self, a: float, b: float) -> np.ndarray:
        """Width from the first to the last body pixel of each non-empty row."""
        r = self.rows(a, b)
        r = r[r.any(1)]
        if not len(r):
            return np.zeros(0)
        first = r.argmax(1)
        last = r.shape[1] - 1 - r[:, ::-1].argmax(1)
        return (last - first + 1).astype(np.float64)


def _runs(row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and (exclusive) ends of the body runs of one row."""
    d = np.diff(np.concatenate([[0], row.astype(np.int8), [0]]))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def arm_angles(b: _Body) -> list[tuple[float, tuple[float, float]]]:
    """Per arm (image left, right): angle (deg) from the shoulder to the farthest point, and that point."""
    reg = b.rows(*ARM_ROWS)
    out = []
    for sign in (-1, 1):
        reach = np.where(reg, (b.cols - b.c) * sign, -np.inf).max(1)
        if not np.isfinite(reach).any():
            out.append((math.nan, (b.c, b.y(0.5))))
            continue
        far = reach.max()
        row = float(np.flatnonzero(reach >= far - 0.5).mean()) + round(ARM_ROWS[0] * b.h)
        dx, dy = far / b.h - SHOULDER[0], row / b.h - SHOULDER[1]
        out.append((math.degrees(math.atan2(dx, dy)), (b.c + sign * far, b.top + row)))
    return out


def leg_gap(b: _Body) -> float:
    """Mean width of the background between the legs (mid-thigh to ankles) / body height."""
    ci = min(max(round(b.c), 0), b.s.shape[1] - 1)
    gaps = []
    for row in b.rows(*LEG_ROWS):
        if row[ci]:
            gaps.append(0)
            continue
        starts, ends = _runs(row)
        left, right = ends[ends <= ci], starts[starts > ci]
        gaps.append((right.min() if right.size else len(row)) - (left.max() if left.size else 0))
    gaps = np.asarray(gaps, np.float64)
    first = round((KNEES_TOUCH_FROM - LEG_ROWS[0]) * b.h)
    touching = np.flatnonzero(gaps[first:] == 0)
    if touching.size:
        gaps[first + touching[-1] :] = 0.0
    return float(gaps.mean()) / b.h


def front_tilt(b: _Body) -> tuple[float, tuple[float, float, float, float]]:
    """Tilt (deg, + = head to image right) of the line from the lower body's centroid (legs) to
    the upper body's (head, torso, arms), and that line (x0, y0, x1, y1) for the mark."""
    ys, xs = np.nonzero(b.s)
    upper, lower = ys < b.y(UPPER_BODY), ys >= b.y(LOWER_BODY)
    x0, y0, x1, y1 = xs[lower].mean(), ys[lower].mean(), xs[upper].mean(), ys[upper].mean()
    return math.degrees(math.atan2(x1 - x0, y0 - y1)), (x0, y0, x1, y1)


def leg_layout(b: _Body) -> tuple[float, float]:
    """Front view at knee height: (mean width of one leg, distance between the legs' centres), px."""
    widths, centres = [], []
    for row in b.rows(*KNEE_ROWS):
        starts, ends = _runs(row)
        if len(starts) >= 2:
            order = np.argsort(ends - starts)[-2:]  # the two widest runs: the legs
            widths.extend((ends - starts)[order])
            mid = (starts[order] + ends[order]) / 2
            centres.append(abs(mid[1] - mid[0]))
        elif len(starts) == 1:
            widths.append((ends[0] - starts[0]) / 2)
            centres.append((ends[0] - starts[0]) / 2)
    if not widths:
        return math.nan, math.nan
    return float(np.mean(widths)), float(np.mean(centres))


def _leg_centres(b: _Body, a: float, z: float) -> tuple[float, float] | None:
    """Mean centre (x) of the left and the right leg over rows a..z: the two widest runs of each
    row with at least two; None when fewer than two rows show two legs."""
    left, right = [], []
    for row in b.rows(a, z):
        starts, ends = _runs(row)
        if len(starts) >= 2:
            order = np.argsort(ends - starts)[-2:]
            lo, hi = sorted((starts[order] + ends[order] - 1) / 2)
            left.append(lo)
            right.append(hi)
    return (float(np.mean(left)), float(np.mean(right))) if len(left) >= 2 else None


def feet_turn(b: _Body) -> float:
    """Signed mean sideways offset of the two feet from their shins, / body height (+ = image right).

    Facing the camera, the feet point at it and the offsets are small, or opposite (toes
    splayed) and cancel in the mean; a body turned by theta shows both feet's length (about 25 cm
    x sin theta) to the same side of the ankles. Per leg: the centroid of the foot's pixels
    (TURN_FOOT_ROWS, split at the middle between the legs) minus the leg's centre in
    TURN_SHIN_ROWS. Foot rows that one run fills from one leg's centre to the other's (the
    training's shadow under the feet, the feet merged) are left out. NaN (passes) when the
    shins do not show two legs.
    """
    legs = _leg_centres(b, *TURN_SHIN_ROWS)
    if legs is None:
        return math.nan
    xl, xr = legs
    mid = (xl + xr) / 2
    feet = b.rows(*TURN_FOOT_ROWS)
    feet = feet[~feet[:, round(xl) : round(xr) + 1].all(1)]
    _, xs = np.nonzero(feet)
    left, right = xs[xs < mid], xs[xs >= mid]
    if not left.size or not right.size:
        return math.nan
    return float((left.mean() - xl) + (right.mean() - xr)) / 2 / b.h


def side_turn(side: _Body, front: _Body) -> float:
    """Turn away from a true profile (deg): in profile the legs hide each other, turned they show
    side by side, apart by (distance between the legs in the front view) x sin(turn)."""
    one_leg, apart = leg_layout(front)
    both = side.extents(*KNEE_ROWS)
    if not both.size or not math.isfinite(apart) or apart < 1:
        return math.nan
    s = (float(np.mean(both)) - one_leg) / apart
    return math.degrees(math.asin(min(max(s, 0.0), 1.0)))


def side_arm_reach(b: _Body) -> float:
    """Widest row at hand height over the chest's depth: arms swung forwards or back stick out."""
    hands, chest = b.extents(*SIDE_HAND_ROWS), b.extents(*SIDE_CHEST_ROWS)
    return float(hands.max() / chest.mean()) if hands.size and chest.size else math.nan


def side_lean(b: _Body) -> float:
    """Forward lean (deg) of the ankles-to-head line; the toes say which way the person faces."""
    toes, ankle = b.centroid_x(*TOE_ROWS), b.centroid_x(*SHIN_ROWS)
    facing = 1.0 if toes >= ankle else -1.0
    dy = (sum(SHIN_ROWS) - sum(HEAD_ROWS)) / 2 * b.h
    return math.degrees(math.atan2(facing * (b.c - ankle), dy))


def neck_depth(b: _Body) -> float:
    """Narrowest row of the neck over the deepest row of the head, in profile. A person's neck is
    shallower than the head (about 0.6; at most 0.94 over 1,000 training-like renders); when the
    segmentation merges an object behind the person into them (rembg does this with a bold
    object that touches the outline), the block fills the nape and the ratio reaches 1."""
    head, neck = b.extents(*SIDE_HEAD_ROWS), b.extents(*SIDE_NECK_ROWS)
    return float(neck.min() / head.max()) if head.size and neck.size else math.nan


def pair_ratios(front: _Body, side: _Body) -> np.ndarray:
    """log(front width / side depth) at the chest, waist and hip (PAIR_LEVELS, +-2% bands):
    the torso is the widest run of a front row (the arms are away from it), the side depth a
    row's whole extent."""
    out = []
    for t in PAIR_LEVELS:
        rows = front.rows(t - 0.02, t + 0.02)
        widths = [float((e - st).max()) for st, e in map(_runs, rows) if len(st)]
        depth = side.extents(t - 0.02, t + 0.02)
        if not widths or not depth.size:
            return np.full(len(PAIR_LEVELS), np.nan)
        out.append(math.log(float(np.mean(widths)) / float(depth.mean())))
    return np.array(out)


def pair_distance(ratios: np.ndarray) -> float:
    d = np.asarray(ratios) - np.asarray(PAIR_MEAN)
    return float(math.sqrt(max(float(d @ np.asarray(PAIR_INV_COV) @ d), 0.0)))


def segmentation_height_px(person_px: float, photo_hw: tuple[int, int]) -> float:
    """The person's height in the pixels the mask was made at: the photo's (as read, at most
    :data:`bodyshape.photo.WORK_LONG_SIDE`) or rembg's 320x320 input, whichever is smaller."""
    if not person_px or min(photo_hw) <= 0:
        return math.nan
    return float(min(person_px, REMBG_INPUT_PX * person_px / photo_hw[0]))


# ----------------------------------------------------------------------------- the checks
def _cols(b: _Body, a: float, z: float) -> tuple[float, float]:
    """First and last column with body pixels in rows a..z (the whole canvas when none), for marks."""
    cols = b.cols[b.rows(a, z).any(0)]
    return (float(cols.min()), float(cols.max())) if cols.size else (0.0, float(b.s.shape[1] - 1))


def check_silhouettes(front: np.ndarray, side: np.ndarray) -> list[CaptureCheck]:
    """The pose checks on two normalised silhouettes (128x96 uint8, as the network sees them)."""
    f, s = _Body(front), _Body(side)
    checks = []
    arms = arm_angles(f)
    angles = [a for a, _ in arms]
    low, high = ARM_ANGLE_DEG
    worst = min(angles) if min(angles) < low or not max(angles) > high else max(angles)
    shoulder_y = f.y(SHOULDER[1])
    arm_marks = tuple(
        Mark("front", "line", (f.c + sign * SHOULDER[0] * f.h, shoulder_y, x, y))
        for (a, (x, y)), sign in zip(arms, (-1, 1), strict=True)
        if not low <= a <= high
    )
    checks.append(_judge("front_arms", worst, arm_marks))
    legs = Mark("front", "box", (f.c - 0.16 * f.h, f.y(LEG_ROWS[0] - 0.08), f.c + 0.16 * f.h, f.y(1.0)))
    checks.append(_judge("front_feet", leg_gap(f), (legs,)))
    tilt, (x0, y0, x1, y1) = front_tilt(f)
    axis = (x0 + (x0 - x1) * 0.9, y0 + (y0 - y1) * 0.9, x1 + (x1 - x0) * 0.9, y1 + (y1 - y0) * 0.9)  # feet to head
    checks.append(_judge("front_tilt", abs(tilt), (Mark("front", "line", axis),)))
    x0, x1 = _cols(f, TURN_SHIN_ROWS[0], 1.0)
    feet = Mark("front", "box", (x0 - 3, f.y(TURN_SHIN_ROWS[0]), x1 + 3, f.y(1.0) + 1))
    checks.append(_judge("front_turned", abs(feet_turn(f)), (feet,)))
    x0, x1 = _cols(s, *KNEE_ROWS)
    ankles = Mark("side", "box", (x0 - 3, s.y(KNEE_ROWS[0] - 0.1), x1 + 3, s.y(1.0)))
    checks.append(_judge("side_turned", side_turn(s, f), (ankles,)))
    x0, x1 = _cols(s, *SIDE_HAND_ROWS)
    hands = Mark("side", "box", (x0 - 2, s.y(SIDE_HAND_ROWS[0]), x1 + 2, s.y(SIDE_HAND_ROWS[1])))
    checks.append(_judge("side_arms", side_arm_reach(s), (hands,)))
    ankle_x = s.centroid_x(*SHIN_ROWS)
    checks.append(_judge("side_lean", side_lean(s), (Mark("side", "line", (ankle_x, s.y(0.88), s.c, s.y(0.02))),)))
    torso = tuple(
        Mark(v, "box", (b.c - 0.14 * b.h, b.y(PAIR_LEVELS[0] - 0.03), b.c + 0.14 * b.h, b.y(PAIR_LEVELS[-1] + 0.03)))
        for v, b in (("front", f), ("side", s))
    )
    checks.append(_judge("same_person", pair_distance(pair_ratios(f, s)), torso))
    return checks


def check_framing(person_px: tuple[float, float], photo_hw: tuple[tuple[int, int], tuple[int, int]],
                  silhouettes: tuple[np.ndarray, np.ndarray]) -> CaptureCheck:  # fmt: skip
    """The smaller of the two photos' :func:`segmentation_height_px` against its minimum."""
    px = [segmentation_height_px(p, hw) for p, hw in zip(person_px, photo_hw, strict=True)]
    worst = int(np.nanargmin(px)) if np.isfinite(px).any() else 0
    view = ("front", "side")[worst]
    b = _Body(silhouettes[worst])
    box = Mark(view, "box", (b.cols[b.s.any(0)].min() - 2, b.top - 2, b.cols[b.s.any(0)].max() + 2, b.top + b.h + 1))
    return _judge("framing", px[worst], (box,))


def check_segmentation(side: np.ndarray) -> CaptureCheck:
    """Did the side photo's segmentation take in something behind the person? Not one of the pose
    checks (:func:`check_silhouettes`): like the framing, it is about the photo's mask, so the
    evaluation and the interval calibration, which read rendered masks, leave it out."""
    s = _Body(side)
    z = SIDE_NECK_ROWS[1] + 0.08
    x0, x1 = _cols(s, 0.0, z)
    return _judge("side_outline", neck_depth(s), (Mark("side", "box", (x0 - 2, s.top - 2, x1 + 2, s.y(z))),))


def check_masks(front: np.ndarray, side: np.ndarray) -> list[CaptureCheck]:
    """Every check that reads only the two normalised silhouettes: the pose checks and the
    segmentation check (the page's checks less the framing, which needs the photos)."""
    return [*check_silhouettes(front, side), check_segmentation(side)]


def check_capture(front, side) -> list[CaptureCheck]:
    """All checks of a :class:`~bodyshape.photo.PhotoSilhouette` pair, in :data:`SPECS` order.

    The photo's size is read from ``image.shape`` (a session may keep a pixel-less
    ``(H, W, 0)`` image), the person's height from the mask's rows.
    """
    checks = check_masks(front.silhouette, side.silhouette)
    person = tuple(float(np.ptp(np.flatnonzero(v.mask.any(1))) + 1) if v.mask.any() else 0.0 for v in (front, side))
    hw = tuple(tuple(v.image.shape[:2]) for v in (front, side))
    checks.append(check_framing(person, hw, (front.silhouette, side.silhouette)))
    order = list(SPECS)
    return sorted(checks, key=lambda c: order.index(c.name))


# ----------------------------------------------------------------------------- marking
#: Colour of the marks on the silhouette previews (RGB).
MARK_RGB = (230, 60, 30)


def marked_preview(sil: np.ndarray, view: str, checks: list[CaptureCheck], zoom: int) -> np.ndarray:
    """The silhouette enlarged ``zoom`` times, RGB (H, W, 3), white body on black (grey where
    the body covers part of a pixel), with the failed checks' marks of ``view`` drawn in
    :data:`MARK_RGB`."""
    import cv2

    big = cv2.resize(as_canvases(sil), None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
    rgb = np.ascontiguousarray(np.dstack([big] * 3))
    for m in (m for c in checks if not c.passed for m in c.marks if m.view == view):
        x0, y0, x1, y1 = (round(v * zoom) for v in m.xyxy)
        if m.kind == "box":
            cv2.rectangle(rgb, (x0, y0), (x1, y1), MARK_RGB, 2)
        else:
            cv2.line(rgb, (x0, y0), (x1, y1), MARK_RGB, 3, cv2.LINE_AA)
    return rgb
