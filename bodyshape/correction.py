"""The measurement correction: a small network that corrects what the mesh measures.

Why (issue #12): the shape network is trained on the mean vertex distance of the mesh, not on
the girths people read, and mostly in the capture pose. Off that pose (arms raised, a wide or
narrow stance, a lean) its bodies err by 25-30 mm at chest, waist and hip, with errors that
the outline still shows. A second, small network (a two-layer MLP, 30k numbers) reads what the
first one concluded (the mean body's measurements and shape numbers, the height) and the
outline itself (the share of body pixels at each of 32 height bands, front and side), and
predicts the error of each measurement. It is trained on silhouette pairs drawn with the wide
pose distribution (``bodyshape generate --pose wide``, seed 41: never a training seed of the
shape network, never an evaluation or calibration seed), against the true measurements.

The mesh moves with the numbers (:mod:`bodyshape.refit`): the corrected measurements (less any
clothing allowance) are a target the shape is refitted to, and what is reported is measured on
the refitted mesh. ``bodyshape fit-correction`` fits it (``training/fit_correction.py``); it is
shipped next to the weights (``correction.safetensors``), for the fused weights it was fitted
on (their SHA-256 is in its metadata).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from bodyshape.errors import BodyShapeError
from bodyshape.measurements import DEFINITIONS_VERSION, MEASUREMENT_NAMES

#: Height bands of the outline profile, per view.
PROFILE_LEVELS = 32
CORRECTION_FILE = "correction.safetensors"
#: Declared clothing (bodyshape/clothing.py) -> its correction's file. *Fitted* clothing has one of
#: its own, fitted on dressed rows (``bodyshape generate --dressed``; docs/evaluation.md, "A
#: correction for fitted clothing"): what cloth does to an outline depends on the body under it.
#: A weights folder without it corrects fitted clothing with the general one.
CORRECTION_FILES = {"tight": CORRECTION_FILE, "fitted": "correction_fitted.safetensors"}
#: The typed height is given, never corrected.
_HEIGHT = MEASUREMENT_NAMES.index("height")

log = logging.getLogger(__name__)


def silhouette_profile(silhouettes: np.ndarray) -> np.ndarray:
    """(B, H, W) normalised silhouettes (coverage canvases) -> (B, PROFILE_LEVELS): the body's
    width in each of PROFILE_LEVELS bands between its top and bottom row, in body heights (the
    mean over the band's rows of the body's coverage summed along the row, so sub-pixel edges
    count; arms included, as the outline shows them)."""
    from bodyshape.silhouette import as_canvases

    cover = as_canvases(silhouettes).astype(np.float32) / 255
    out = np.zeros((len(cover), PROFILE_LEVELS), np.float32)
    for i, m in enumerate(cover):
        rows = np.flatnonzero(m.any(1))
        if len(rows) == 0:
            continue
        top, bottom = rows[0], rows[-1] + 1
        width = m[top:bottom].sum(1) / (bottom - top)
        edges = np.linspace(0, len(width), PROFILE_LEVELS + 1).astype(int)
        out[i] = [width[a:max(b, a + 1)].mean() for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return out


def correction_inputs(point: np.ndarray, shape: np.ndarray, height: np.ndarray, front: np.ndarray,
                      side: np.ndarray) -> np.ndarray:  # fmt: skip
    """What the correction reads, (B, F): the mean body's measurements (B, M) metres and shape
    numbers (B, S), the height (B,) metres and both outlines' profiles."""
    h = np.asarray(height, np.float32).reshape(-1, 1)
    return np.hstack([np.asarray(point, np.float32), np.asarray(shape, np.float32), h,
                      silhouette_profile(front), silhouette_profile(side)]).astype(np.float32)  # fmt: skip


def build_net(n_in: int, hidden: int, dropout: float = 0.0) -> torch.nn.Sequential:
    """The correction network: inputs (standardised) -> the error of each measurement, cm."""
    return torch.nn.Sequential(
        torch.nn.Linear(n_in, hidden), torch.nn.GELU(), torch.nn.Dropout(dropout),
        torch.nn.Linear(hidden, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, len(MEASUREMENT_NAMES)),
    )  # fmt: skip


class MeasurementCorrection:
    """A fitted correction (an ensemble of :func:`build_net` networks and the inputs'
    standardisation). :meth:`change` is what to add to each measurement, metres."""

    def __init__(self, nets: list[torch.nn.Sequential], mean: np.ndarray, std: np.ndarray, info: dict) -> None:
        self.nets = [n.eval() for n in nets]
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)
        self.info = info

    @torch.no_grad()
    def change(self, inputs: np.ndarray) -> np.ndarray:
        """(B, F) :func:`correction_inputs` -> (B, M) the correction of each measurement,
        metres (the mean of the ensemble's answers; zero for the typed height)."""
        x = torch.from_numpy((np.asarray(inputs, np.float32) - self.mean) / self.std)
        out = torch.stack([n(x) for n in self.nets]).mean(0).numpy().astype(np.float64) / 100  # cm -> m
        out[:, _HEIGHT] = 0.0
        return out

    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_file

        path = Path(path)
        tensors = {f"net{k}.{name}": t.detach().contiguous() for k, n in enumerate(self.nets)
                   for name, t in n.state_dict().items()}  # fmt: skip
        tensors |= {"input_mean": torch.from_numpy(self.mean), "input_std": torch.from_numpy(self.std)}
        meta = {"info": json.dumps(self.info), "names": json.dumps(list(MEASUREMENT_NAMES)),
                "members": str(len(self.nets)), "hidden": str(self.nets[0][0].out_features)}  # fmt: skip
        save_file(tensors, str(path), metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | Path) -> MeasurementCorrection:
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), "pt") as f:
                meta = f.metadata()
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
        except (OSError, ValueError, SafetensorError) as e:
            raise BodyShapeError(f"cannot read the measurement correction {path}: {e}") from e
        if json.loads((meta or {}).get("names", "[]")) != list(MEASUREMENT_NAMES):
            raise BodyShapeError(f"{path} corrects other measurements than this version's: run `bodyshape fit-correction`")
        mean, std = tensors["input_mean"].numpy(), tensors["input_std"].numpy()
        nets = []
        for k in range(int(meta["members"])):
            net = build_net(len(mean), int(meta["hidden"]))
            net.load_state_dict({n[len(f"net{k}."):]: t for n, t in tensors.items() if n.startswith(f"net{k}.")})
            nets.append(net)
        return cls(nets, mean, std, json.loads(meta["info"]))


def correction_path(folder: Path, clothing: str = "tight") -> Path:
    """The file in ``folder`` that corrects the declared ``clothing`` (:data:`CORRECTION_FILES`;
    the general one where the folder has none of its own)."""
    from bodyshape.clothing import DEFAULT_CLOTHING, check_clothing

    path = folder / CORRECTION_FILES[check_clothing(clothing)]
    if not path.exists() and clothing != DEFAULT_CLOTHING:
        log.info("%s has no %s: %s clothing is corrected by %s", folder, path.name, clothing, CORRECTION_FILE)
        return folder / CORRECTION_FILE
    return path


def load_correction(weights_dir: str | Path | None = None, clothing: str = "tight") -> MeasurementCorrection:
    """The correction shipped with the weights for the declared ``clothing`` (:data:`CORRECTION_FILES`;
    the general one where a folder has none of its own); logs a warning when it was fitted for
    other fused weights (after ``bodyshape ship``, run ``bodyshape fit-correction``)."""
    from bodyshape.paths import WEIGHTS_DIR
    from bodyshape.uncertainty import file_sha256

    folder = Path(weights_dir or WEIGHTS_DIR)
    path = correction_path(folder, clothing)
    model = MeasurementCorrection.load(path)
    fused = folder / "fused.safetensors"
    if fused.exists() and model.info.get("weights_sha256") != file_sha256(fused):
        log.warning("%s was fitted for other weights than %s: run `bodyshape fit-correction`", path, fused)
    if model.info.get("definitions", 1) != DEFINITIONS_VERSION:
        log.warning("%s was fitted for measurement definitions %s, these are %s: run `bodyshape fit-correction`",
                    path, model.info.get("definitions", 1), DEFINITIONS_VERSION)
    return model


def reported_bodies(shapes: np.ndarray, heights: np.ndarray, point: np.ndarray, front: np.ndarray, side: np.ndarray,
                    correction: MeasurementCorrection | None, allowance: np.ndarray,
                    progress: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """The bodies the product reports, from the network's mean bodies (``shapes`` (B, S) at
    ``heights``, whose meshes measure ``point`` (B, M)) and their silhouettes: the measurements
    moved by the ``correction`` (None: none) and less the clothing ``allowance`` (M,), the
    shapes refitted to them -> (shapes, meshes, measurements), measured on those meshes."""
    from bodyshape.refit import refitted

    return refitted(shapes, heights, requested_change(shapes, heights, point, front, side, correction, allowance), progress)


def requested_change(shapes: np.ndarray, heights: np.ndarray, point: np.ndarray, front: np.ndarray, side: np.ndarray,
                     correction: MeasurementCorrection | None, allowance: np.ndarray) -> np.ndarray:  # fmt: skip
    """(B, M) metres: what :func:`reported_bodies` asks the refit to move each body's
    measurements by: the ``correction``'s change (None: none) less the clothing ``allowance``."""
    change = -np.broadcast_to(np.asarray(allowance, np.float64), np.shape(point))
    if correction is not None:
        change = change + correction.change(correction_inputs(point, shapes, heights, front, side))
    return change
