import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from bodyshape.cli import main as cli_main
from bodyshape.errors import BodyShapeError
from training.config import DataConfig
from training.dataset import load_dataset
from training.generate import generate, shard_name


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "a"
    cfg = DataConfig(n=10, seed=3, shard_size=4)
    generate(cfg, out, workers=1, progress=False)
    return cfg, out


def test_dataset_contents(small):
    cfg, out = small
    ds = load_dataset(out)
    assert len(ds) == 10
    b = ds.batch(np.arange(10))
    assert b["front"].shape == (10, 128, 96) and set(np.unique(b["front"])) <= {0, 1}
    assert (b["front"].sum((1, 2)) > 1500).all() and (b["side"].sum((1, 2)) > 800).all()
    assert 1.4 < b["height"].min() and b["height"].max() < 2.1
    np.testing.assert_allclose(b["measurements"][:, 0], b["height"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and len(manifest["shards"]) == 3


def test_same_seed_same_bytes(small, tmp_path):
    cfg, out = small
    generate(cfg, tmp_path / "b", workers=1, progress=False)
    for name in (shard_name(i) for i in range(3)):
        assert digest(out / name) == digest(tmp_path / "b" / name)
    generate(DataConfig(n=10, seed=4, shard_size=4), tmp_path / "c", workers=1, progress=False)
    assert digest(out / shard_name(0)) != digest(tmp_path / "c" / shard_name(0))


def test_interrupted_generation_resumes_without_gaps_or_duplicates(small, tmp_path):
    cfg, out = small
    part = tmp_path / "part"
    generate(cfg, part, workers=1, progress=False)
    # simulate an interruption: one shard never finished (only its temp file), one truncated
    (part / shard_name(1)).rename(part / (shard_name(1) + ".tmp"))
    data = (part / shard_name(2)).read_bytes()
    (part / shard_name(2)).write_bytes(data[: len(data) // 2])
    m = json.loads((part / "manifest.json").read_text())
    m["complete"] = False
    (part / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BodyShapeError, match="incomplete"):
        load_dataset(part)
    manifest = generate(cfg, part, workers=1, progress=False)
    assert manifest["last_run"]["samples"] == 6  # shards 1 (4) and 2 (2) redone, shard 0 kept
    assert not list(part.glob("*.tmp"))
    idx = np.concatenate([np.load(part / shard_name(i))["index"] for i in range(3)])
    np.testing.assert_array_equal(idx, np.arange(10))
    for i in range(3):
        assert digest(part / shard_name(i)) == digest(out / shard_name(i))


def test_changed_config_is_refused_on_resume(small):
    _, out = small
    with pytest.raises(BodyShapeError, match=r"different configuration: seed \(was 3, now 99\)"):
        generate(DataConfig(n=10, seed=99, shard_size=4), out, workers=1, progress=False)


def test_default_output_folder_is_the_one_the_help_names(tmp_path, monkeypatch, capsys):
    from bodyshape import paths

    monkeypatch.setattr(paths, "DATA_DIR", tmp_path)
    with pytest.raises(SystemExit):
        cli_main(["generate", "--help"])
    assert "default data/seed<SEED>-n<N>" in " ".join(capsys.readouterr().out.split())
    assert cli_main(["generate", "--n", "2", "--seed", "7", "--shard-size", "2", "--workers", "1"]) == 0
    assert load_dataset(tmp_path / "seed7-n2").manifest["n"] == 2


def test_bad_arguments_give_clear_errors(tmp_path, capsys):
    with pytest.raises(BodyShapeError, match="positive"):
        generate(DataConfig(n=-5), tmp_path / "x", workers=1, progress=False)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(BodyShapeError, match="cannot write"):
        generate(DataConfig(n=4), blocker / "sub", workers=1, progress=False)
    assert cli_main(["generate", "--n", "-1", "--out", str(tmp_path / "y")]) == 2
    assert "positive" in capsys.readouterr().err
