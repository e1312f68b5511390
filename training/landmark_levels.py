"""Where the trunk girths are taken, on bodies of the training sampler, against where a survey of
real people puts the same landmarks (docs/measurements.md, "Trunk landmark levels").

    python -m training.landmark_levels --n 400 --seed 123            # ~1 min on 2 cores
    python -m training.landmark_levels --survey DIR                  # also rewrite the survey file

Heights are compared as fractions of the way from the crotch up to the acromion (the trunk's
length, so that legs and heads of other lengths do not enter). The survey side comes from
``bodyshape/data/ansur2_levels.csv``, written from ANSUR II's per-person files with ``--survey``
(DIR holds ``ANSUR_II_{MALE,FEMALE}_Public.csv``; see bodyshape/data/ANSUR2_SOURCE.md):
``iliocristaleheight`` (iliac crest), ``tenthribheight`` (lowest rib), ``chestheight`` (bust
point), ``buttockheight``, ``waistheightomphalion`` (navel).

Printed per sex: each landmark's fraction on Anny and in the survey; where the survey's iliac
crest and lowest rib fall between Anny's spine04 and spine02 joints (what
``bodyshape.measurements.WAIST_BAND`` is set from); how often the underbust level lies at or
below the natural waist (ISO 8559-1: it lies above); and the bust point's height above the waist.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from bodyshape.paths import PACKAGE_DIR

LEVELS_FILE = PACKAGE_DIR / "data" / "ansur2_levels.csv"
#: Survey column -> our name of the landmark.
SURVEY_LEVELS = {
    "iliocristaleheight": "iliac_crest",
    "tenthribheight": "lowest_rib",
    "chestheight": "bust",
    "buttockheight": "hip",
    "waistheightomphalion": "navel",
}


def write_survey_levels(survey: Path, out: Path = LEVELS_FILE) -> Path:
    """Per sex and landmark: n, mean, sd, p5, p95 of (height - crotch) / (acromion - crotch)."""
    from bodyshape.population import SURVEY_PEOPLE_FILES, read_survey_people

    rows = []
    for sex in SURVEY_PEOPLE_FILES:
        people = read_survey_people(survey, sex)

        def col(k: str, people: list = people) -> np.ndarray:
            return np.array([float(p[k]) for p in people])

        crotch, trunk = col("crotchheight"), col("acromialheight") - col("crotchheight")
        for column, landmark in SURVEY_LEVELS.items():
            x = (col(column) - crotch) / trunk
            rows.append([sex, landmark, column, len(x), *np.round([x.mean(), x.std(ddof=1), *np.percentile(x, [5, 95])], 4)])
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sex", "landmark", "ansur_column", "n", "mean", "sd", "p5", "p95"])
        w.writerows(rows)
    return out


def read_survey_levels(path: Path = LEVELS_FILE) -> dict[tuple[str, str], float]:
    """(sex, landmark) -> mean fraction of the way from the crotch to the acromion."""
    with open(path) as f:
        return {(r["sex"], r["landmark"]): float(r["mean"]) for r in csv.DictReader(f)}


def anny_levels(n: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per landmark (n,) heights of the sampler's rest meshes as fractions of the way from the
    crotch to the acromion (and ``bust_above_waist_cm``), and the gender phenotype (0 male .. 1 female)."""
    from tqdm import tqdm

    from bodyshape.body_model import get_body_model
    from bodyshape.measurements import get_measurer

    model, m = get_body_model(), get_measurer()
    shapes = model.sample_shapes(n, seed)
    rows = []
    for start in tqdm(range(0, n, 50), desc="bodies", unit="batch"):
        for v in model.forward(shapes[start : start + 50]).rest_vertices.astype(np.float64):
            lv, j, acromion = m.levels(v), m.joints(v), m.acromions(v)
            base, trunk = lv["crotch"], 0.5 * (acromion["L"][2] + acromion["R"][2]) - lv["crotch"]
            rows.append({**{k: (lv[k] - base) / trunk for k in ("waist", "underbust", "bust", "hip")},
                         "spine04": (j["spine04"][2] - base) / trunk, "spine02": (j["spine02"][2] - base) / trunk,
                         "bust_above_waist_cm": 100 * (lv["bust"] - lv["waist"])})  # fmt: skip
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}, shapes[:, 0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=400)
    p.add_argument("--seed", type=int, default=123)
    p.add_argument("--survey", type=Path, help="folder with ANSUR II's per-person files: rewrite " + LEVELS_FILE.name)
    a = p.parse_args()
    if a.survey:
        print(f"wrote {write_survey_levels(a.survey)}")
    survey = read_survey_levels()
    lv, gender = anny_levels(a.n, a.seed)
    for sex, sel in (("male", gender < 0.5), ("female", gender >= 0.5)):
        s4, s2 = lv["spine04"][sel].mean(), lv["spine02"][sel].mean()
        print(f"{sex} ({sel.sum()} bodies), fraction of the way from the crotch to the acromion, mean (5th-95th percentile):")
        for ours, theirs in (("hip", "hip"), ("waist", "lowest_rib"), ("bust", "bust")):
            x = lv[ours][sel]
            print(f"  {ours:9s} Anny {x.mean():.3f} ({np.percentile(x, 5):.3f}-{np.percentile(x, 95):.3f})   "
                  f"survey {theirs} {survey[sex, theirs]:.3f}")
        print(f"  survey iliac crest {survey[sex, 'iliac_crest']:.3f} and lowest rib {survey[sex, 'lowest_rib']:.3f}: "
              f"{(survey[sex, 'iliac_crest'] - s4) / (s2 - s4):.2f} and {(survey[sex, 'lowest_rib'] - s4) / (s2 - s4):.2f} "
              f"of the way from Anny's spine04 ({s4:.3f}) to spine02 ({s2:.3f})")
        gap = lv["underbust"][sel] - lv["waist"][sel]
        bust = lv["bust_above_waist_cm"][sel]
        print(f"  underbust at or below the natural waist: {np.mean(gap <= 0):.0%}; bust point above the waist: "
              f"median {np.median(bust):.1f} cm (5th percentile {np.percentile(bust, 5):.1f})")


if __name__ == "__main__":
    main()
