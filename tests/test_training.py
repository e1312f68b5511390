"""A tiny end-to-end training run: loss goes down, staged init copies the encoders."""

import json

import numpy as np
import pytest
import torch

from bodyshape.checkpoint import load_model, read_metadata
from training.config import DataConfig
from training.generate import generate
from training.train import TrainConfig, build_stage_model, main


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    generate(DataConfig(n=240, seed=5, shard_size=120), root / "data", workers=1, progress=False)
    cfg = TrainConfig(
        data=str(root / "data"), out=str(root / "run"), weights_out=str(root / "weights"),
        val_size=40, batch_size=32, epoch_samples=160, threads=2,
        samples={"front": 640, "side": 640, "fused_staged": 640}, net={"widths": (8, 8, 12, 12, 16), "feature_dim": 64, "head_hidden": 64},
    )
    summaries = main(cfg)
    return cfg, summaries, root


def test_loss_goes_down_in_every_stage(trained):
    _, summaries, _ = trained
    assert set(summaries) == {"front", "side", "fused_staged", "fused_scratch"}
    for stage, s in summaries.items():
        hist = s["history"]
        assert len(hist) >= 2, stage
        assert hist[-1]["train_loss"] < hist[0]["train_loss"], (stage, hist)


def test_scratch_gets_the_same_total_budget(trained):
    cfg, summaries, _ = trained
    assert summaries["fused_scratch"]["samples"] == (640 // 2 + 640 // 2 + 640) // 32 * 32


def test_staged_init_copies_single_view_encoders(trained):
    cfg, _, _ = trained
    fused = build_stage_model(cfg, "fused_staged")
    for view in ("front", "side"):
        single = torch.load(f"{cfg.out}/{view}/final.pt", weights_only=False)["model"]
        for name, tensor in fused.encoders[view].state_dict().items():
            torch.testing.assert_close(tensor, single[f"encoders.{view}.{name}"], rtol=0, atol=0)
    scratch = build_stage_model(cfg, "fused_scratch")
    w = next(iter(scratch.encoders["front"].state_dict().values()))
    assert not torch.equal(w, next(iter(fused.encoders["front"].state_dict().values())))


def test_resume_skips_finished_stages_and_weights_rebuild(trained):
    cfg, summaries, root = trained
    again = main(cfg)  # every stage finished: nothing retrained
    assert json.dumps(again["fused_scratch"]) == json.dumps(summaries["fused_scratch"])
    model = load_model(root / "weights" / "fused.safetensors")
    _, info = read_metadata(root / "weights" / "fused.safetensors")
    assert info["trained"] and info["stage"] == "fused_staged"
    x = torch.zeros(2, 1, 128, 96)
    with torch.no_grad():
        y = model(x, x, torch.tensor([1.6, 1.8]))
    assert y.shape == (2, 20) and torch.isfinite(y).all()
    assert not np.allclose(y[0].numpy(), y[1].numpy())  # the height input is used
