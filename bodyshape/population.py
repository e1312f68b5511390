"""``bodyshape population``: our synthetic population against real adults (ANSUR II).

The training data are drawn from :meth:`BodyModel.sample_shapes`. This stage draws ``--n``
bodies from the same sampler, measures their rest meshes with :mod:`bodyshape.measurements`,
splits them by sex and compares each measurement with the US Army's ANSUR II survey (2012,
public domain; 4,082 men and 1,986 women aged 17-58), in two ways:

* **distribution**: mean, SD, 5th and 95th percentiles, ours vs the survey's;
* **matched**: each synthetic body against the survey's linear regression of that
  measurement on stature and weight, i.e. against soldiers of the same height and weight.
  This is the fair test of a *definition*: it does not care that the sampler's people are
  older, heavier or shorter than soldiers.

Weight of a synthetic body = mesh volume x :data:`BODY_DENSITY`. Sex: Anny's ``gender``
phenotype runs from 0 = male to 1 = female (checked on the meshes: see docs/measurements.md);
bodies between 1/3 and 2/3 are left out of the per-sex comparison.

The survey enters as a small summary file (``bodyshape/data/ansur2_summary.csv``, see
``bodyshape/data/ANSUR2_SOURCE.md``), never the per-person files; ``--rebuild-survey DIR``
rewrites it from ``ANSUR_II_MALE_Public.csv`` / ``ANSUR_II_FEMALE_Public.csv`` in ``DIR``.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bodyshape.errors import BodyShapeError
from bodyshape.paths import PACKAGE_DIR, REPO_DIR
from bodyshape.report import write_block

SURVEY_FILE = PACKAGE_DIR / "data" / "ansur2_summary.csv"
DOC_FILE = REPO_DIR / "docs" / "measurements.md"
#: kg/m^3, whole-body density with the air in the lungs (literature: about 0.98-1.00 kg/L
#: with lung air, 1.01-1.07 without). Anny's own anthropometry uses 980.
BODY_DENSITY = 985.0
#: Our measurement -> the ANSUR II column measured the same way or nearly (see
#: :data:`SURVEY_NOTES` for the differences). Survey units: mm; ``weightkg`` in 0.1 kg.
SURVEY_COLUMNS: dict[str, str] = {
    "height": "stature",
    "chest": "chestcircumference",
    "waist": "waistcircumference",
    "hip": "buttockcircumference",
    "neck": "neckcircumferencebase",
    "thigh": "thighcircumference",
    "upper_arm": "bicepscircumferenceflexed",
    "inseam": "crotchheight",
    "shoulder": "biacromialbreadth",
    "arm_length": "sleeveoutseam",
    "wrist": "wristcircumference",
    "calf": "calfcircumference",
    "across_back": "interscyei",
    "back_waist_length": "waistbacklength",
}
#: Where the survey's measurement is not quite ours.
SURVEY_NOTES: dict[str, str] = {
    "waist": "ANSUR measures the waist at the navel (omphalion), ISO 8559-1 at the natural waist",
    "upper_arm": "ANSUR's biceps girth is taken with the biceps flexed, ours relaxed",
    "back_waist_length": "ANSUR ends at the level of the navel (omphalion) at the back, ours at the natural waist",
    "across_back": "ANSUR Interscye I, across the back between the posterior armpit folds",
}
SEXES = ("female", "male")
_STAT_FIELDS = ("n", "mean", "sd", "p5", "p95", "b0", "b_stature", "b_weight", "resid_sd")


# ----------------------------------------------------------------------------- the survey
def summarise_survey(rows: list[dict[str, str]]) -> dict[str, dict[str, float]]:
    """Per measurement: n, mean, SD, P5, P95 (metres) and the least-squares fit
    ``value = b0 + b_stature * stature_m + b_weight * weight_kg`` with its residual SD.

    ``rows`` are one sex's per-person ANSUR II records (mm; ``weightkg`` in 0.1 kg).
    """
    stature = np.array([float(r["stature"]) for r in rows]) / 1000
    weight = np.array([float(r["weightkg"]) for r in rows]) / 10
    design = np.column_stack([np.ones_like(stature), stature, weight])
    out: dict[str, dict[str, float]] = {}
    for name, col in SURVEY_COLUMNS.items():
        y = np.array([float(r[col]) for r in rows]) / 1000
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        resid = y - design @ coef
        out[name] = {
            "n": len(y), "mean": y.mean(), "sd": y.std(ddof=1),
            "p5": np.percentile(y, 5), "p95": np.percentile(y, 95),
            "b0": coef[0], "b_stature": coef[1], "b_weight": coef[2], "resid_sd": resid.std(ddof=3),
        }
    out["weight"] = {"n": len(weight), "mean": weight.mean(), "sd": weight.std(ddof=1),
                     "p5": np.percentile(weight, 5), "p95": np.percentile(weight, 95),
                     "b0": np.nan, "b_stature": np.nan, "b_weight": np.nan, "resid_sd": np.nan}
    return out


#: The survey's per-person files (not in the repository; see data/ANSUR2_SOURCE.md), per sex.
SURVEY_PEOPLE_FILES = {"male": "ANSUR_II_MALE_Public.csv", "female": "ANSUR_II_FEMALE_Public.csv"}


def read_survey_people(ansur_dir: Path, sex: str) -> list[dict[str, str]]:
    """The rows of one sex's ANSUR II per-person file in ``ansur_dir`` (Latin-1), column -> text."""
    path = Path(ansur_dir) / SURVEY_PEOPLE_FILES[sex]
    if not path.is_file():
        raise BodyShapeError(f"{path} not found: this needs the two ANSUR II per-person files")
    with open(path, encoding="latin-1", newline="") as f:  # the files are Latin-1
        return list(csv.DictReader(f))


def write_survey_summary(ansur_dir: Path, out: Path = SURVEY_FILE) -> Path:
    """Rewrite the summary file from the two per-person ANSUR II files in ``ansur_dir``."""
    lines = []
    for sex in ("female", "male"):
        stats = summarise_survey(read_survey_people(ansur_dir, sex))
        for name, s in stats.items():
            lines.append([sex, name, SURVEY_COLUMNS.get(name, "weightkg")] + [_fmt(s[k]) for k in _STAT_FIELDS])
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["sex", "measurement", "ansur_column", *_STAT_FIELDS])
        w.writerows(lines)
    return out


def _fmt(x: float) -> str:
    x = round(float(x), 9)  # drops float noise (stature regressed on itself: 1, 0, 0)
    return "" if np.isnan(x) else (str(int(x)) if x.is_integer() else f"{x:.6g}")


def load_survey(path: Path = SURVEY_FILE) -> dict[str, dict[str, dict[str, float]]]:
    """``{sex: {measurement: {stat: value}}}`` from the committed summary (metres, kg)."""
    if not Path(path).is_file():
        raise BodyShapeError(f"survey summary {path} not found (it is package data; reinstall bodyshape)")
    out: dict[str, dict[str, dict[str, float]]] = {s: {} for s in SEXES}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            out[row["sex"]][row["measurement"]] = {k: float(row[k]) if row[k] else np.nan for k in _STAT_FIELDS}
    return out


# ----------------------------------------------------------------------------- ours
@dataclass
class Population:
    """Measured synthetic bodies: ``values[name]`` (n,) metres, ``weight`` kg, ``gender`` phenotype."""

    values: dict[str, np.ndarray]
    weight: np.ndarray
    gender: np.ndarray

    def sex(self, sex: str) -> np.ndarray:
        """Mask of the clearly male (gender < 1/3) or clearly female (> 2/3) bodies."""
        return self.gender < 1 / 3 if sex == "male" else self.gender > 2 / 3


def mesh_volume(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Volumes (m^3) of closed meshes (B, V, 3) by the divergence theorem."""
    tri = vertices[:, faces]  # (B, F, 3, 3)
    return np.abs(np.einsum("bfi,bfi->b", tri[:, :, 0], np.cross(tri[:, :, 1], tri[:, :, 2])) / 6.0)


def synthetic_population(n: int, seed: int, batch: int = 50) -> Population:
    """``n`` bodies from the training sampler, measured on their rest meshes."""
    from bodyshape.body_model import PHENOTYPE_LABELS, get_body_model
    from bodyshape.measurements import MEASUREMENT_NAMES, get_measurer

    model, measurer = get_body_model(), get_measurer()
    shapes = model.sample_shapes(n, seed)
    meas, weight = [], []
    for start in range(0, n, batch):
        rest = model.forward(shapes[start : start + batch]).rest_vertices.astype(np.float64)
        meas.append(measurer.batch(rest))
        weight.append(mesh_volume(rest, model.faces) * BODY_DENSITY)
    m = np.concatenate(meas) if meas else np.zeros((0, len(MEASUREMENT_NAMES)))
    return Population(
        values={k: m[:, i].astype(np.float64) for i, k in enumerate(MEASUREMENT_NAMES)},
        weight=np.concatenate(weight) if weight else np.zeros(0),
        gender=shapes[:, PHENOTYPE_LABELS.index("gender")].astype(np.float64),
    )


# ----------------------------------------------------------------------------- comparison
@dataclass
class Row:
    """One measurement of one sex, ours vs the survey (metres)."""

    sex: str
    name: str
    n: int
    ours: tuple[float, float, float, float]  # mean, SD, P5, P95
    survey: tuple[float, float, float, float]
    z_mean: float  # (our mean - survey mean) / survey SD
    n_matched: int
    z_matched: float  # mean over our bodies of (ours - survey prediction) / survey SD


def _stats(x: np.ndarray) -> tuple[float, float, float, float]:
    if len(x) < 2:
        return (np.nan,) * 4
    return float(x.mean()), float(x.std(ddof=1)), float(np.percentile(x, 5)), float(np.percentile(x, 95))


def compare(pop: Population, survey: dict[str, dict[str, dict[str, float]]]) -> list[Row]:
    """Per sex and surveyed measurement: distributions, and ours against the survey's
    regression on stature and weight. The matched comparison uses only bodies whose stature
    and weight lie within the survey's mean +- 2 SD (no extrapolating the regression)."""
    rows = []
    for sex in SEXES:
        sel = pop.sex(sex)
        s = survey[sex]
        height, weight = pop.values["height"], pop.weight
        inside = sel & (np.abs(height - s["height"]["mean"]) < 2 * s["height"]["sd"]) \
            & (np.abs(weight - s["weight"]["mean"]) < 2 * s["weight"]["sd"])
        for name in SURVEY_COLUMNS:
            ref, ours = s[name], pop.values[name]
            pred = ref["b0"] + ref["b_stature"] * height[inside] + ref["b_weight"] * weight[inside]
            z_matched = float(np.mean(ours[inside] - pred) / ref["sd"]) if inside.any() else np.nan
            st = _stats(ours[sel])
            rows.append(Row(sex, name, int(sel.sum()), st, (ref["mean"], ref["sd"], ref["p5"], ref["p95"]),
                            (st[0] - ref["mean"]) / ref["sd"], int(inside.sum()), z_matched))
        st = _stats(weight[sel])
        w = s["weight"]
        rows.append(Row(sex, "weight", int(sel.sum()), st, (w["mean"], w["sd"], w["p5"], w["p95"]),
                        (st[0] - w["mean"]) / w["sd"], int(inside.sum()), np.nan))
    return rows


# ----------------------------------------------------------------------------- report


def _cell(stats: tuple[float, ...], scale: float) -> tuple[str, str]:
    mean, sd, p5, p95 = (x * scale for x in stats)
    return f"{mean:.1f} ({sd:.1f})", f"{p5:.1f}-{p95:.1f}"


def _z(z: float) -> str:
    return "" if np.isnan(z) else (f"**{z:+.2f}**" if abs(z) > 0.5 else f"{z:+.2f}")


def render_table(rows: list[Row], n: int, seed: int, seconds: float) -> str:
    """The markdown block written into docs/measurements.md."""
    lines = [
        f"`bodyshape population --n {n} --seed {seed}`, {datetime.date.today().isoformat()}, "
        f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, {seconds:.0f} s. "
        f"cm (weight: kg, volume x {BODY_DENSITY:.0f} kg/m^3). Survey: ANSUR II (US Army 2012). "
        "Δ = (ours − survey) / survey SD; **bold**: more than 0.5 SD. *matched*: each of our bodies "
        "against the survey's regression on stature and weight (people of the same height and weight).",
        "",
        "| sex | measurement | n | ours mean (SD) | survey mean (SD) | ours P5-P95 | survey P5-P95 "
        "| Δ mean | n matched | Δ matched | survey note |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        scale = 1.0 if r.name == "weight" else 100.0
        (om, op), (sm, sp) = _cell(r.ours, scale), _cell(r.survey, scale)
        col = SURVEY_COLUMNS.get(r.name, "weightkg")
        note = SURVEY_NOTES.get(r.name, "")
        lines.append(f"| {r.sex} | {r.name} (`{col}`) | {r.n} | {om} | {sm} | {op} | {sp} | {_z(r.z_mean)} "
                     f"| {r.n_matched} | {_z(r.z_matched)} | {note} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=1000, help="synthetic bodies to draw (default 1000)")
    parser.add_argument("--seed", type=int, default=21, help="sampler seed (default 21)")
    parser.add_argument("--doc", type=Path, default=DOC_FILE,
                        help="markdown file whose population table is rewritten (default docs/measurements.md)")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--rebuild-survey", type=Path, metavar="DIR",
                        help="first rewrite the survey summary from the ANSUR II per-person CSVs in DIR")


def run(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise BodyShapeError(f"--n must be >= 1, got {args.n}")
    if args.rebuild_survey is not None:
        print(f"survey summary: {write_survey_summary(args.rebuild_survey)}")
    survey = load_survey()
    t0 = time.perf_counter()
    rows = compare(synthetic_population(args.n, args.seed), survey)
    block = render_table(rows, args.n, args.seed, time.perf_counter() - t0)
    print(block)
    if not args.no_write:
        print(f"written into {write_block(args.doc, 'bodyshape population', block, 'Measurements')}")
    return 0
