"""Model files that rebuild themselves: safetensors weights + the NetConfig and metadata.

A ``.safetensors`` file holds the weights; its metadata holds ``net_config`` (JSON of
:class:`~bodyshape.nets.NetConfig`) and free-form ``info`` (JSON: training data, metrics).
Loading refuses a file whose shape-parameter list differs from this code's.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from bodyshape.body_model import SHAPE_LABELS, SHAPE_VERSION
from bodyshape.errors import BodyShapeError
from bodyshape.nets import BodyShapeNet, NetConfig


def save_model(model: BodyShapeNet, path: str | Path, info: dict | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"net_config": json.dumps(model.cfg.to_dict()), "info": json.dumps(info or {})}
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def read_metadata(path: str | Path) -> tuple[NetConfig, dict]:
    path = Path(path)
    if not path.is_file():
        raise BodyShapeError(f"model file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        cfg = NetConfig.from_dict(json.loads(meta["net_config"]))
    except BodyShapeError:
        raise
    except Exception as e:  # corrupt or foreign file: say which file
        raise BodyShapeError(f"model file {path} is not a valid bodyshape model: {e}") from e
    if tuple(cfg.shape_labels) != SHAPE_LABELS or cfg.shape_version != SHAPE_VERSION:
        raise BodyShapeError(
            f"model file {path} predicts a different shape-parameter list ({cfg.shape_version}: "
            f"{', '.join(cfg.shape_labels)}) than this code ({SHAPE_VERSION}: {', '.join(SHAPE_LABELS)}); "
            "retrain, or use the code the file was trained with"
        )
    return cfg, json.loads(meta.get("info", "{}"))


def load_model(path: str | Path, device: str | torch.device = "cpu") -> BodyShapeNet:
    """Rebuild the network from a model file, in eval mode."""
    cfg, _ = read_metadata(path)
    model = BodyShapeNet(cfg)
    model.load_state_dict(load_file(str(path), device=str(device)))
    return model.to(device).eval()
