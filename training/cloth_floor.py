"""How well any model can do on the dressed photo splits: the floor the cloth margin sets.

    python -m training.cloth_floor            # ~1 min on 2 cores

The dressed splits (``photo``, ``repeatability``) put a loose-clothing margin on the torso of
each view (:func:`training.splits.dress`: 0.5-1.5 cm at a 1.7 m scale, whole pixels, drawn per
view). The person declares *fitted* clothing and the page takes one allowance off. A margin
m_f in front and m_s in profile adds about pi (m_f + m_s) to a girth (an ellipse grown by m_f
across and m_s in depth); a model that cannot see the margin can at best take off its median,
so even a perfect body errs by the mean absolute deviation of that added girth. This prints
it, with the margins drawn exactly as :func:`dress` draws them for bodies rendered as the
splits render them (seed 4245: none of the splits' or training seeds), and what it becomes
when added to a bare-photo error of the given MAE (normal). Nothing is fitted.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

#: What ``bodyshape evaluate`` last wrote.
EVALUATION = Path(__file__).resolve().parents[1] / "docs" / "evaluation.json"


def added_girths(n: int, draws: int, seed: int) -> np.ndarray:
    """(n * draws,) metres: the girth the cloth margin adds, pi (m_f + m_s), over ``n`` bodies
    rendered as the photo splits render them, ``draws`` margins each."""
    from bodyshape.body_model import get_body_model
    from bodyshape.measurements import measure
    from demo.synthetic import render_masks
    from training.splits import cloth_margin_px

    model = get_body_model()
    rng = np.random.default_rng(seed)
    out = []
    for shape in model.sample_shapes(n, seed=seed):
        height = measure(model.forward(shape[None]).vertices[0])["height"]
        body_px = [int(np.ptp(np.flatnonzero(m.any(1)))) for m in render_masks(shape)]  # as dress measures it
        for _ in range(draws):
            m_front, m_side = (cloth_margin_px(h, rng) * height / (h + 1) for h in body_px)
            out.append(np.pi * (m_front + m_side))
    return np.asarray(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100, help="bodies")
    p.add_argument("--draws", type=int, default=50, help="margins drawn per body")
    p.add_argument("--seed", type=int, default=4245)
    p.add_argument("--bare", type=float, nargs="*", default=None,
                   help="bare-photo MAEs (mm) to combine with (default: the photo_bare chest, waist and hip of "
                        "docs/evaluation.json, the last `bodyshape evaluate`)")
    a = p.parse_args()
    if a.bare is None:
        errors = json.loads(EVALUATION.read_text())["off_distribution"]["splits"]["photo_bare"]["errors"]
        a.bare = [errors[g]["mae"] for g in ("chest", "waist", "hip")]
    added = added_girths(a.n, a.draws, a.seed) * 1000
    floor = np.abs(added - np.median(added)).mean()
    print(f"cloth margin, added girth (mm): mean {added.mean():.1f}, median {np.median(added):.1f}, "
          f"SD {added.std():.1f}, 10th-90th percentile {np.percentile(added, 10):.1f}-{np.percentile(added, 90):.1f}")
    print(f"floor of the dressed splits' girth MAE, a perfect body, the median taken off: {floor:.1f} mm")
    rng = np.random.default_rng(a.seed)
    spread = added - np.median(added)
    for mae in a.bare:
        bare = rng.normal(0.0, mae * np.sqrt(np.pi / 2), len(spread))  # a normal error of that MAE
        print(f"with a bare-photo error of MAE {mae:.1f} mm: {np.abs(bare + spread).mean():.1f} mm")


if __name__ == "__main__":
    main()
