"""Dataset rows as network inputs: random training batches and whole-set predictions.

Shared by training (:mod:`training.train`) and evaluation (:mod:`training.evaluate`), which
must read a dataset the same way.
"""

from __future__ import annotations

import numpy as np
import torch

from bodyshape.errors import BodyShapeError
from bodyshape.nets import BodyShapeNet, subpixel_look
from bodyshape.silhouette import SUBPIXEL_PHASES
from training.config import TrainConfig
from training.dataset import SilhouetteDataset


def to_tensors(b: dict[str, np.ndarray], rng: np.random.Generator | None = None,
               height_noise_m: float = 0.0) -> tuple[torch.Tensor, ...]:
    """``(front, side, height, shape)`` tensors of a batch; with ``rng``, the typed height gets noise."""
    f = torch.from_numpy(b["front"]).float()[:, None]
    s = torch.from_numpy(b["side"]).float()[:, None]
    h = b["height"].copy()
    if rng is not None:
        h = h + rng.normal(0, height_noise_m, h.shape).astype(np.float32)
    return f, s, torch.from_numpy(h), torch.from_numpy(b["shape"])


def autocast(device: torch.device):
    """bfloat16 for the CNN on a GPU; the loss and the body model stay in float32/64."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


class Batches:
    """Random training batches ``(front, side, height, shape)`` as tensors on the training device.

    On the CPU, silhouettes stay as stored and each batch is read on demand. On a GPU,
    the whole set is unpacked into GPU memory once (65k pairs: 1.6 GB), so the GPU never
    waits for the CPU. Augmentations drawn here: typed-height noise, random mirroring and, for
    coverage datasets with ``cfg.random_phase``, a random sub-pixel phase per sample
    (:func:`bodyshape.nets.subpixel_look`; else the 0/1 body, phase 0).
    """

    def __init__(self, ds: SilhouetteDataset, cfg: TrainConfig) -> None:
        self.ds, self.cfg = ds, cfg
        self.device = torch.device(cfg.device)
        if cfg.random_phase and not ds.coverage:
            raise BodyShapeError(f"--random-phase needs a coverage dataset ({cfg.data} stores 0/1 bodies): "
                                 "generate it with --silhouettes coverage")
        self.phase = cfg.random_phase
        if self.device.type != "cpu":
            store = ds.canvases if self.phase else ds.unpack
            self.front = torch.from_numpy(store(ds.front)).to(self.device)
            self.side = torch.from_numpy(store(ds.side)).to(self.device)
            self.height = torch.from_numpy(ds.height).to(self.device)
            self.shape = torch.from_numpy(ds.shape).to(self.device)

    def sample(self, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        n = self.cfg.batch_size
        idx = rng.integers(0, len(self.ds), n)
        if self.device.type == "cpu":
            f, s, h, y = to_tensors(self.ds.batch(idx, canvases=self.phase), rng, self.cfg.height_noise_m)
        else:
            i = torch.from_numpy(idx).to(self.device)
            f, s = self.front[i].float()[:, None], self.side[i].float()[:, None]
            noise = torch.from_numpy(rng.normal(0, self.cfg.height_noise_m, n).astype(np.float32))
            h, y = self.height[i] + noise.to(self.device), self.shape[i]
        if self.phase:  # coverage (B, 1, H, W) -> the 0/1 body at a phase drawn per sample
            f, s = (subpixel_look(x[:, 0], torch.from_numpy(rng.integers(0, SUBPIXEL_PHASES, n))) for x in (f, s))
        if self.cfg.p_flip > 0:
            f, s = (self._flip(x, torch.from_numpy(rng.random(n) < self.cfg.p_flip)) for x in (f, s))
        return f, s, h, y

    def _flip(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.where(mask.to(self.device)[:, None, None, None], x.flip(-1), x)


def ordered_batches(ds: SilhouetteDataset, batch: int = 256):
    """``(row indices, numpy batch)`` over the whole set, in order."""
    for i in range(0, len(ds), batch):
        idx = np.arange(i, min(i + batch, len(ds)))
        yield idx, ds.batch(idx)


@torch.no_grad()
def predict(model: BodyShapeNet, ds: SilhouetteDataset, batch: int = 256, side_override: np.ndarray | None = None) -> np.ndarray:
    """Shape predictions for a whole dataset; ``side_override`` replaces the side inputs."""
    model.eval()
    out = []
    for idx, b in ordered_batches(ds, batch):
        if side_override is not None:
            b["side"] = side_override[idx]
        f, s, h, _ = to_tensors(b)
        out.append(model(f, s, h).numpy())
    return np.concatenate(out)
