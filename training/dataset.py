"""Reading a generated dataset (see :mod:`training.generate` for the layout)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bodyshape.errors import BodyShapeError


@dataclass
class SilhouetteDataset:
    """All shards of a dataset in memory; silhouettes stay as stored (bit-packed or coverage
    canvases, :attr:`training.config.DataConfig.silhouettes`) until a batch is read."""

    front: np.ndarray  # (N, H, W/8) uint8 packed, or (N, H, W) uint8 coverage
    side: np.ndarray
    shape: np.ndarray  # (N, S) float32
    height: np.ndarray  # (N,) metres
    measurements: np.ndarray  # (N, M) metres
    manifest: dict

    def __len__(self) -> int:
        return len(self.shape)

    @property
    def canvas_hw(self) -> tuple[int, int]:
        return tuple(self.manifest["canvas_hw"])

    @property
    def coverage(self) -> bool:
        """Whether the shards store coverage canvases (else bit-packed 0/1 bodies)."""
        return self.manifest.get("config", {}).get("silhouettes", "bits") == "coverage"

    def unpack(self, stored: np.ndarray) -> np.ndarray:
        """Stored silhouettes -> (B, H, W) uint8 0/1: the body the network trains on
        (:func:`bodyshape.silhouette.body_pixels` of a coverage canvas)."""
        from bodyshape.silhouette import body_pixels

        if self.coverage:
            return body_pixels(stored).astype(np.uint8)
        return np.unpackbits(stored, axis=-1, count=self.canvas_hw[1])

    def canvases(self, stored: np.ndarray) -> np.ndarray:
        """Stored silhouettes -> (B, H, W) uint8 canvases as the page reads them: coverage when
        stored, else the 0/1 body as 0/255 (no sub-pixel detail)."""
        from bodyshape.silhouette import as_canvases

        return np.array(stored, dtype=np.uint8) if self.coverage else as_canvases(self.unpack(stored).astype(bool))

    def batch(self, idx: np.ndarray, canvases: bool = False) -> dict[str, np.ndarray]:
        """Rows ``idx``; the views as 0/1 bodies, or with ``canvases`` as :meth:`canvases` reads them."""
        read = self.canvases if canvases else self.unpack
        return {
            "front": read(self.front[idx]),
            "side": read(self.side[idx]),
            "shape": self.shape[idx],
            "height": self.height[idx],
            "measurements": self.measurements[idx],
        }

    def select(self, rows: slice | np.ndarray) -> SilhouetteDataset:
        return SilhouetteDataset(self.front[rows], self.side[rows], self.shape[rows], self.height[rows],
                                 self.measurements[rows], self.manifest)


def load_dataset(folder: str | Path, limit: int | None = None, partial: bool = False) -> SilhouetteDataset:
    """Load a generated dataset; ``partial``: the shards finished so far of one still being made.

    Shards are written under a temporary name and renamed when complete, so every shard file
    present is whole. A partial load's manifest says ``"partial": true`` and its ``n`` is the
    number of samples loaded.
    """
    folder = Path(folder)
    mpath = folder / "manifest.json"
    if not mpath.exists():
        raise BodyShapeError(f"{folder} is not a dataset (no manifest.json); run `bodyshape generate` first")
    manifest = json.loads(mpath.read_text())
    if not manifest.get("complete") and not partial:
        raise BodyShapeError(f"dataset {folder} is incomplete; rerun the same `bodyshape generate` to finish it")
    names = [n for n in manifest["shards"] if (folder / n).exists()] if partial else manifest["shards"]
    if not names:
        raise BodyShapeError(f"dataset {folder} has no finished shard yet")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("front", "side", "shape", "height", "measurements")}
    total = 0
    for name in names:
        with np.load(folder / name) as z:
            for k in parts:
                parts[k].append(z[k])
            total += len(z["shape"])
        if limit is not None and total >= limit:
            break
    arrays = {k: np.concatenate(v)[:limit] for k, v in parts.items()}
    if partial:
        manifest = {**manifest, "n": len(arrays["shape"]), "partial": True, "shards": names}
    return SilhouetteDataset(**arrays, manifest=manifest)
