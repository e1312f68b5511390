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


def test_time_budget_stage_ends_on_time_and_keeps_the_best(trained, tmp_path):
    """A stage with a time budget runs its schedule on elapsed time (the one-GPU recipe)."""
    import dataclasses
    import time

    cfg, _, _ = trained
    timed = dataclasses.replace(cfg, out=str(tmp_path / "run"), weights_out="", stages=("front",),
                                seconds={"front": 4.0}, epoch_samples=64, keep_best=True, p_flip=0.5)
    t = time.time()
    s = main(timed)["front"]
    assert 4.0 <= s["seconds"] < 4.0 + 30, s["seconds"]  # stops at the budget (+ one validation)
    assert time.time() - t < 60
    assert s["steps"] > 1 and s["samples"] == s["steps"] * timed.batch_size
    best = s["best"]
    vals = {h["step"]: h["val_param"] + timed.vertex_loss_weight * h["val_vertex_cm"] for h in s["history"]}
    assert best["step"] in vals and best["val_loss"] == pytest.approx(min(vals.values()))


def test_mirroring_flips_whole_rows_only(trained):
    from training.dataset import load_dataset
    from training.train import Batches

    cfg, _, root = trained
    import dataclasses

    ds = load_dataset(root / "data")
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    plain = Batches(ds, dataclasses.replace(cfg, p_flip=0.0)).sample(rng_a)
    flipped = Batches(ds, dataclasses.replace(cfg, p_flip=1.0)).sample(rng_b)
    torch.testing.assert_close(flipped[0], plain[0].flip(-1))
    torch.testing.assert_close(flipped[1], plain[1].flip(-1))
    torch.testing.assert_close(flipped[3], plain[3])  # same people, same labels


def test_partial_load_reads_finished_shards_only(trained, tmp_path):
    import shutil

    from bodyshape.errors import BodyShapeError
    from training.dataset import load_dataset

    _, _, root = trained
    part = tmp_path / "part"
    shutil.copytree(root / "data", part)
    manifest = json.loads((part / "manifest.json").read_text())
    manifest["complete"] = False
    (part / "manifest.json").write_text(json.dumps(manifest))
    (part / "shard_00001.npz").rename(part / "shard_00001.npz.tmp")  # still being written
    with pytest.raises(BodyShapeError, match="incomplete"):
        load_dataset(part)
    ds = load_dataset(part, partial=True)
    assert len(ds) == 120 and ds.manifest["n"] == 120 and ds.manifest["partial"]
    full = load_dataset(root / "data")
    np.testing.assert_array_equal(ds.shape, full.shape[:120])


def test_fine_tuning_starts_from_the_given_model(trained):
    import dataclasses

    from bodyshape.errors import BodyShapeError

    cfg, _, root = trained
    start = dataclasses.replace(cfg, init=str(root / "weights" / "fused.safetensors"))
    model = build_stage_model(start, "fused_staged")
    shipped = load_model(root / "weights" / "fused.safetensors")
    for name, tensor in shipped.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], tensor, rtol=0, atol=0)
    other = dataclasses.replace(start, net={"widths": (8, 8, 12, 12, 24), "feature_dim": 64, "head_hidden": 64})
    with pytest.raises(BodyShapeError, match="another network"):
        build_stage_model(other, "fused_staged")
