"""Lever 2b of the accuracy issue, measured: can a girth-from-outline relation learned on real
people (ANSUR II) calibrate the girths of the reconstructed mesh?

The relation per site and sex is ``girth = a * pi * sqrt((breadth^2 + depth^2) / 2) + c``,
fitted on 75% of the survey's people and tested on the other 25% (seeded). It could only
calibrate the mesh if the mesh's breadth and depth at the girth's level were the survey's
breadth and depth. This script measures both sides the same way we would use them:

* the survey: ``chestbreadth/chestdepth/chestcircumference``, ``waistbreadth/waistdepth/
  waistcircumference``, ``hipbreadth/buttockdepth/buttockcircumference`` (mm);
* Anny: ``--n`` bodies of the training sampler, rest meshes, the extents (x: breadth, y: depth)
  of the convex hull of the section each girth is measured on (bodyshape/measurements.py:
  bust level, natural waist, buttock level), and the girth itself.

Printed per site and sex: mean breadth and depth on both sides, the ratio girth / ellipse term,
the relation's held-out error on soldiers, the same soldiers predicted with Anny's own relation,
and how far the survey relation would move Anny's girths. The survey's per-person files are not
in the repository (see bodyshape/data/ANSUR2_SOURCE.md)::

    python -m training.survey_girths --survey DIR     # DIR holds ANSUR_II_{MALE,FEMALE}_Public.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

#: Site -> survey columns (breadth, depth, circumference) and the level our girth uses.
SITES = {
    "chest": ("chestbreadth", "chestdepth", "chestcircumference", "bust"),
    "waist": ("waistbreadth", "waistdepth", "waistcircumference", "waist"),
    "hip": ("hipbreadth", "buttockdepth", "buttockcircumference", "hip"),
}


def ellipse_term(breadth: np.ndarray, depth: np.ndarray) -> np.ndarray:
    return np.pi * np.sqrt((breadth**2 + depth**2) / 2)


def fit(breadth: np.ndarray, depth: np.ndarray, girth: np.ndarray) -> np.ndarray:
    """(a, c) of girth = a * ellipse_term + c, least squares."""
    x = np.c_[ellipse_term(breadth, depth), np.ones(len(girth))]
    return np.linalg.lstsq(x, girth, rcond=None)[0]


def predict(coef: np.ndarray, breadth: np.ndarray, depth: np.ndarray) -> np.ndarray:
    return coef[0] * ellipse_term(breadth, depth) + coef[1]


def anny_sections(n: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per site (n, 3) breadth, depth, girth in mm of the sampler's rest meshes, and the
    gender phenotype (0 male .. 1 female)."""
    from tqdm import tqdm

    from bodyshape.body_model import PHENOTYPE_LABELS, get_body_model
    from bodyshape.measurements import band_faces, convex_hull, get_measurer, section_points

    model, m = get_body_model(), get_measurer()
    shapes = model.sample_shapes(n, seed)
    out: dict[str, list] = {s: [] for s in SITES}
    for start in tqdm(range(0, n, 50), desc="Anny sections", unit="batch"):
        for v in model.forward(shapes[start : start + 50]).rest_vertices.astype(np.float64):
            z = v[:, 2]
            levels = m.levels(v)
            for site, (*_, level) in SITES.items():
                faces = m.faces_lower if site == "hip" else m.faces_torso  # as Measurer._trunk_girths
                zz = levels[level]
                pts = section_points(v, band_faces(z, faces, zz, zz), np.array([0, 0, zz]), np.array([0, 0, 1.0]))
                hull = convex_hull(pts[:, :2])
                perimeter = np.linalg.norm(hull - np.roll(hull, 1, axis=0), axis=1).sum()
                out[site].append((np.ptp(hull[:, 0]), np.ptp(hull[:, 1]), perimeter))
    return {s: 1000 * np.array(r) for s, r in out.items()}, shapes[:, PHENOTYPE_LABELS.index("gender")]


def main() -> None:
    from bodyshape.population import SURVEY_PEOPLE_FILES, read_survey_people

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--survey", type=Path, required=True, help="folder with the two ANSUR II per-person files")
    p.add_argument("--n", type=int, default=1500)
    p.add_argument("--seed", type=int, default=77)
    args = p.parse_args()

    anny, gender = anny_sections(args.n, args.seed)
    rng = np.random.default_rng(0)
    print("| sex | site | breadth, Anny / survey | depth, Anny / survey | girth / ellipse term, Anny / survey "
          "| held-out soldiers, survey relation: MAE (bias) | same soldiers, Anny's relation: MAE (bias) "
          "| survey relation on Anny bodies minus their girth: mean (SD) |")
    print("|---|---|---|---|---|---|---|---|")
    for sex in SURVEY_PEOPLE_FILES:
        rows = read_survey_people(args.survey, sex)
        test = rng.random(len(rows)) < 0.25
        ours = gender < 1 / 3 if sex == "male" else gender > 2 / 3
        for site, (cb, cd, cc, _) in SITES.items():
            b, d, c = (np.array([float(r[k]) for r in rows]) for k in (cb, cd, cc))
            survey = fit(b[~test], d[~test], c[~test])
            ab, ad, ac = anny[site][ours].T
            own = fit(ab, ad, ac)
            e_survey = predict(survey, b[test], d[test]) - c[test]
            e_own = predict(own, b[test], d[test]) - c[test]
            shift = predict(survey, ab, ad) - ac
            print(f"| {sex} ({ours.sum()} / {len(rows)}) | {site} | {ab.mean():.0f} / {b.mean():.0f} | {ad.mean():.0f} / {d.mean():.0f} "
                  f"| {np.mean(ac / ellipse_term(ab, ad)):.3f} / {np.mean(c / ellipse_term(b, d)):.3f} "
                  f"| {np.abs(e_survey).mean():.1f} ({e_survey.mean():+.1f}) | {np.abs(e_own).mean():.1f} ({e_own.mean():+.1f}) "
                  f"| {shift.mean():+.0f} ({shift.std():.0f}) |")


if __name__ == "__main__":
    main()
