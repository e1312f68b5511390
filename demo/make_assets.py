"""Regenerate the demo's committed pictures from the body model (deterministic).

    python -m demo.make_assets

- ``demo/assets/capture_guide.png``: the capture pose, front and side, as the page shows it;
- ``demo/assets/examples/``: example photo pairs of synthetic bodies (known shape and height)
  with ``examples.json`` (file names, height to type in, true measurements in cm).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from demo.synthetic import OUTFITS, compose_photo, paint_person, render_masks

ASSETS = Path(__file__).resolve().parent / "assets"
GUIDE = ASSETS / "capture_guide.png"
EXAMPLES_DIR = ASSETS / "examples"
#: (name, sample seed, index) of the example bodies: sample_shapes(8, seed)[index].
EXAMPLE_BODIES = (("a", 21, 0), ("b", 21, 3))


def example_shape(seed: int, index: int) -> np.ndarray:
    from bodyshape.body_model import get_body_model

    return get_body_model().sample_shapes(max(8, index + 1), seed=seed)[index]


def true_measurements(shape: np.ndarray) -> dict[str, float]:
    """Measurements (metres) of a shape's rest mesh at its own height."""
    from bodyshape.body_model import get_body_model
    from bodyshape.measurements import measure

    rest = get_body_model().forward(np.asarray(shape, np.float32)[None]).rest_vertices[0]
    rest = rest - [0, 0, rest[:, 2].min()]
    return measure(rest)


def _panel(mask: np.ndarray, title: str, lines: list[str], hw=(620, 420)) -> np.ndarray:
    from bodyshape.silhouette import fill_holes

    h, w = hw
    rng = np.random.default_rng(0)
    mask = fill_holes(mask)
    ys, xs = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    crop = mask[ys[0] : ys[-1] + 1, xs[0] : xs[-1] + 1]
    s = 440 / crop.shape[0]
    crop = cv2.resize(crop, (round(crop.shape[1] * s), 440), interpolation=cv2.INTER_LINEAR)
    canvas = np.zeros((h, w), np.uint8)
    y0, x0 = 70, (w - crop.shape[1]) // 2
    canvas[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
    img = np.full((h, w, 3), 245, np.float32)
    alpha = (canvas.astype(np.float32) / 255)[..., None]
    img = img * (1 - alpha) + paint_person(canvas, rng, OUTFITS[0]) * alpha
    img = np.clip(img, 0, 255).astype(np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(img, title, (16, 40), font, 1.0, (30, 30, 30), 2, cv2.LINE_AA)
    # Frame: head and feet with space around them.
    cv2.rectangle(img, (x0 - 30, y0 - 25), (x0 + crop.shape[1] + 30, y0 + 440 + 20), (0, 150, 0), 2)
    for i, line in enumerate(lines):
        cv2.putText(img, line, (16, 555 + 24 * i), font, 0.55, (30, 30, 30), 1, cv2.LINE_AA)
    return img


def make_guide(path: Path = GUIDE) -> Path:
    shape = example_shape(21, 0)
    front, side = render_masks(shape)
    left = _panel(front, "1. FRONT", ["face the camera squarely, arms ~45 deg out,", "feet hip-width apart"])
    right = _panel(  # the same stance as the front photo: the training pairs share it
        side, "2. SIDE", ["turn to face the picture's right edge,", "arms straight down, feet as in the front"]
    )
    img = np.hstack([left, np.full((left.shape[0], 8, 3), 255, np.uint8), right])
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return path


def make_examples(out_dir: Path = EXAMPLES_DIR) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, seed, index in EXAMPLE_BODIES:
        shape = example_shape(seed, index)
        truth = true_measurements(shape)
        front, side = render_masks(shape)
        rng = np.random.default_rng(seed * 100 + index)
        files = {}
        for view, mask in (("front", front), ("side", side)):
            photo = compose_photo(mask, rng)
            files[view] = f"{name}_{view}.jpg"
            cv2.imwrite(str(out_dir / files[view]), photo[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
        entries.append(
            {
                "name": name,
                "front": files["front"],
                "side": files["side"],
                "height_cm": round(truth["height"] * 100, 1),
                "shape": [round(float(x), 6) for x in shape],
                "true_measurements_cm": {k: round(v * 100, 2) for k, v in truth.items()},
            }
        )
    path = out_dir / "examples.json"
    path.write_text(json.dumps(entries, indent=1))
    return path


def load_examples(out_dir: Path = EXAMPLES_DIR) -> list[dict]:
    """Example entries with absolute ``front``/``side`` paths."""
    entries = json.loads((out_dir / "examples.json").read_text())
    for e in entries:
        e["front"], e["side"] = str(out_dir / e["front"]), str(out_dir / e["side"])
    return entries


if __name__ == "__main__":
    print(make_guide())
    print(make_examples())
