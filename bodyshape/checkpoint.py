"""Model files that rebuild themselves: safetensors weights + the NetConfig and metadata.

A ``.safetensors`` file holds the weights; its metadata holds ``net_config`` (JSON of
:class:`~bodyshape.nets.NetConfig`), free-form ``info`` (JSON: training data, metrics) and,
in files written by ``bodyshape train``, ``train_config`` (JSON of the
``training.config.TrainConfig`` the network was trained with; older files have none).
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
from bodyshape.paths import REPO_DIR


def save_model(
    model: BodyShapeNet, path: str | Path, info: dict | None = None, train_config: dict | None = None
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"net_config": json.dumps(model.cfg.to_dict()), "info": json.dumps(info or {})}
    if train_config is not None:
        meta["train_config"] = json.dumps(train_config)
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def how_to_restore(path: str | Path) -> str:
    """What to do about a missing or damaged model file (the shipped ones are in git)."""
    path = Path(path).resolve()
    try:
        shown = path.relative_to(REPO_DIR)
    except ValueError:
        return (
            "use an intact model file (the shipped ones are in bodyshape/weights/; "
            f"`git checkout -- bodyshape/weights` in {REPO_DIR} restores them) "
            "or train new weights with `bodyshape train`"
        )
    return (
        f"restore the shipped file with `git checkout -- {shown}` (in {REPO_DIR}), "
        "or train new weights with `bodyshape train`"
    )


def _damaged(path: Path, e: Exception) -> BodyShapeError:
    return BodyShapeError(
        f"model file {path} is damaged or not a bodyshape model ({type(e).__name__}: {e}); "
        f"{how_to_restore(path)}"
    )


def _file_metadata(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise BodyShapeError(f"model file {path} is missing; {how_to_restore(path)}")
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except Exception as e:  # corrupt or foreign file: say which file
        raise _damaged(path, e) from e


def read_train_config(path: str | Path) -> dict | None:
    """The training configuration stored in a model file (None in files made before it was stored)."""
    path = Path(path)
    text = _file_metadata(path).get("train_config")
    try:
        return None if text is None else json.loads(text)
    except ValueError as e:
        raise _damaged(path, e) from e


def read_metadata(path: str | Path) -> tuple[NetConfig, dict]:
    path = Path(path)
    meta = _file_metadata(path)
    try:
        cfg = NetConfig.from_dict(json.loads(meta["net_config"]))
    except Exception as e:  # foreign file: say which file
        raise _damaged(path, e) from e
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
    try:
        state = load_file(str(path), device=str(device))
        model.load_state_dict(state)
    except Exception as e:  # truncated data, tensors of another network: say which file
        msg = " ".join(str(e).split())
        msg = msg if len(msg) <= 300 else msg[:297] + "..."
        raise BodyShapeError(
            f"model file {path} is damaged or does not match its network ({type(e).__name__}: {msg}); "
            f"{how_to_restore(path)}"
        ) from e
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise BodyShapeError(
            f"model file {path} is damaged: tensor {bad[0]}{more} holds NaN or infinity; {how_to_restore(path)}"
        )
    return model.to(device).eval()
