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


def test_a_larger_n_extends_a_dataset_of_whole_shards(small, tmp_path):
    """Growing --n adds shards after the existing ones, which stay as they are; the result is the
    dataset a fresh run of the larger --n would make. A partial last shard or a smaller --n is refused."""
    whole = tmp_path / "whole"
    generate(DataConfig(n=8, seed=3, shard_size=4), whole, workers=1, progress=False)
    kept = [digest(whole / shard_name(i)) for i in range(2)]
    manifest = generate(DataConfig(n=12, seed=3, shard_size=4), whole, workers=1, progress=False)
    assert manifest["n"] == 12 and manifest["last_run"]["samples"] == 4
    assert [digest(whole / shard_name(i)) for i in range(2)] == kept
    fresh = tmp_path / "fresh"
    generate(DataConfig(n=12, seed=3, shard_size=4), fresh, workers=1, progress=False)
    for i in range(3):
        assert digest(whole / shard_name(i)) == digest(fresh / shard_name(i))
    np.testing.assert_array_equal(load_dataset(whole).batch(np.arange(12))["shape"], load_dataset(fresh).batch(np.arange(12))["shape"])
    _, partial = small  # n=10: its last shard holds 2 of 4
    with pytest.raises(BodyShapeError, match=r"n \(was 10, now 12\)"):
        generate(DataConfig(n=12, seed=3, shard_size=4), partial, workers=1, progress=False)
    with pytest.raises(BodyShapeError, match=r"n \(was 12, now 8\)"):
        generate(DataConfig(n=8, seed=3, shard_size=4), whole, workers=1, progress=False)


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


def _rotation_deg(pose: dict, bone: str) -> np.ndarray:
    """Each body's rotation angle (degrees) of one bone's pose delta."""
    r = pose[bone][:, :3, :3].numpy()
    return np.degrees(np.arccos(np.clip((np.trace(r, axis1=1, axis2=2) - 1) / 2, -1, 1)))


def test_wide_pose_spreads_legs_and_arms_wider_than_the_capture_pose():
    """The wide preset covers the evaluation splits' stances and arm angles; the default's jitter does not."""
    from bodyshape.body_model import PoseJitter, capture_pose
    from training.config import POSES
    from training.generate import wide_pose

    n, wide = 400, POSES["wide"]
    offsets, yaw = wide_pose(wide, np.random.default_rng(0), n)
    capture = {v: capture_pose(v, n, np.random.default_rng(1), PoseJitter()) for v in ("front", "side")}
    widened = {v: capture_pose(v, n, np.random.default_rng(1), PoseJitter(), offsets[v]) for v in ("front", "side")}
    for view, bone in (("front", "upperleg01.L"), ("front", "upperarm01.L"), ("front", "lowerarm01.L")):
        narrow, broad = _rotation_deg(capture[view], bone), _rotation_deg(widened[view], bone)
        assert np.percentile(broad, 90) > 1.8 * np.percentile(narrow, 90), (bone, np.percentile(narrow, 90))
    assert np.percentile(_rotation_deg(widened["front"], "upperleg01.L"), 95) > 10  # feet together/wide
    assert np.percentile(_rotation_deg(capture["front"], "upperleg01.L"), 95) < 7
    # one person: the same stance and lean in both photos; some bodies keep the plain capture pose
    np.testing.assert_array_equal(offsets["front"].leg_spread, offsets["side"].leg_spread)
    np.testing.assert_array_equal(offsets["front"].torso_lean, offsets["side"].torso_lean)
    still = offsets["front"].leg_spread == 0
    assert 0.2 < still.mean() < 0.4 and (yaw[still] == 0).all() and (offsets["side"].arm_swing[still] == 0).all()
    assert offsets["front"].torso_lean.max() > 11 and np.abs(yaw).max() > 9


def test_default_pose_is_unchanged_and_wide_is_its_own_reproducible_dataset(small, tmp_path):
    """``--pose capture`` gives today's bytes (no new manifest key); ``--pose wide`` differs, reproducibly."""
    from training.config import POSES

    cfg, out = small
    assert POSES["capture"] is None and cfg.pose_ranges is None
    assert "pose_ranges" not in json.loads((out / "manifest.json").read_text())["config"]
    args = ["generate", "--n", "4", "--seed", "3", "--shard-size", "4", "--workers", "1"]
    assert cli_main([*args, "--out", str(tmp_path / "capture")]) == 0
    assert digest(tmp_path / "capture" / shard_name(0)) == digest(out / shard_name(0))
    assert cli_main([*args, "--pose", "wide", "--out", str(tmp_path / "wide")]) == 0
    generate(DataConfig(n=4, seed=3, shard_size=4, pose_ranges=POSES["wide"]), tmp_path / "again", workers=1, progress=False)
    assert digest(tmp_path / "wide" / shard_name(0)) == digest(tmp_path / "again" / shard_name(0))
    assert digest(tmp_path / "wide" / shard_name(0)) != digest(out / shard_name(0))
    stored = json.loads((tmp_path / "wide" / "manifest.json").read_text())["config"]
    assert stored["pose_ranges"]["leg_spread"] == list(POSES["wide"].leg_spread)
    with pytest.raises(BodyShapeError, match="pose_ranges"):  # a capture dataset is not resumed as wide
        generate(DataConfig(n=4, seed=3, shard_size=4, pose_ranges=POSES["wide"]), tmp_path / "capture", workers=1,
                 progress=False)


def test_coverage_sets_store_the_canvases_whose_bodies_the_bits_sets_store(small, tmp_path):
    """``silhouettes="coverage"`` keeps the uint8 canvases (soft edges) of the same renders: their
    0/1 bodies are exactly the bits set's, the manifest says so, and a bits set is not resumed as one."""
    cfg, out = small
    cov = DataConfig(n=4, seed=3, shard_size=4, silhouettes="coverage")
    generate(cov, tmp_path / "cov", workers=1, progress=False)
    bits, canvases = load_dataset(out, limit=4), load_dataset(tmp_path / "cov")
    assert not bits.coverage and canvases.coverage
    assert canvases.front.shape == (4, 128, 96) and canvases.front.dtype == np.uint8
    for view in ("front", "side"):
        stored = getattr(canvases, view)
        soft = (stored > 0) & (stored < 255)
        assert soft.sum() > 4 * 100  # every outline pixel partly covered, not a 0/1 step
        np.testing.assert_array_equal(canvases.unpack(stored), bits.unpack(getattr(bits, view)))
        np.testing.assert_array_equal(canvases.canvases(stored), stored)
        np.testing.assert_array_equal(bits.canvases(getattr(bits, view)), bits.unpack(getattr(bits, view)) * 255)
    np.testing.assert_array_equal(canvases.shape, bits.shape)
    assert json.loads((tmp_path / "cov" / "manifest.json").read_text())["config"]["silhouettes"] == "coverage"
    assert "silhouettes" not in json.loads((out / "manifest.json").read_text())["config"]  # old manifests resume
    with pytest.raises(BodyShapeError, match="silhouettes"):
        generate(DataConfig(n=4, seed=3, shard_size=4), tmp_path / "cov", workers=1, progress=False)


def with_and_without(tmp_path, option: str, key: str):
    """The same 8 coverage pairs of seed 5 made without and with ``option`` 0.5 (the CLI) -> the
    two datasets, the rows ``key`` flags in the second one's shards, and the CLI's arguments.
    Checked on the way: some rows flagged and some not (each row's own seed decides), the
    share in the manifest, and no ``key`` in the plain one's (manifests made before it resume)."""
    plain, other = tmp_path / "plain", tmp_path / key
    generate(DataConfig(n=8, seed=5, shard_size=4, silhouettes="coverage"), plain, workers=1, progress=False)
    args = ["generate", "--n", "8", "--seed", "5", "--shard-size", "4", "--workers", "1", "--silhouettes", "coverage"]
    assert cli_main([*args, option, "0.5", "--out", str(other)]) == 0
    flags = np.concatenate([np.load(other / shard_name(i))[key] for i in range(2)])
    assert 0 < flags.sum() < 8, flags
    assert json.loads((other / "manifest.json").read_text())["config"][key] == 0.5
    assert key not in json.loads((plain / "manifest.json").read_text())["config"]
    return load_dataset(plain), load_dataset(other), flags, args


def test_off_model_rows_are_the_same_bodies_with_bumps_measured_on_the_deformed_mesh(tmp_path):
    """``--off-model SHARE``: that share of the bodies gets random torso/thigh bumps; the bodies,
    poses and noise are those of the same set without them; the stored measurements are the
    deformed mesh's, and the truth redrawn from the seeds (``true_meshes``) reproduces them."""
    from bodyshape.measurements import MEASUREMENT_NAMES, get_measurer
    from training.evaluate import true_meshes

    a, b, flags, args = with_and_without(tmp_path, "--off-model", "off_model")
    np.testing.assert_array_equal(a.shape, b.shape)
    np.testing.assert_array_equal(a.front[~flags], b.front[~flags])  # same poses, cameras, noise
    np.testing.assert_array_equal(a.measurements[~flags], b.measurements[~flags])
    girths = [MEASUREMENT_NAMES.index(g) for g in ("chest", "waist", "hip", "thigh")]
    moved = np.abs(b.measurements[flags][:, girths] - a.measurements[flags][:, girths]).max(1)
    assert (moved > 0.002).all(), moved  # every deformed body's girths changed (3 cm bumps)
    assert (np.abs(b.front[flags].astype(int) - a.front[flags]).sum((1, 2)) > 0).all()  # and its outline
    truth = get_measurer().batch(true_meshes(b, slice(0, 8)))
    np.testing.assert_allclose(truth[:, girths], b.measurements[:, girths], atol=0.002)
    assert cli_main([*args, "--off-model", "1.5", "--out", str(tmp_path / "bad")]) == 2


def test_dressed_rows_are_the_same_bodies_in_cloth_measured_bare(tmp_path):
    """``--dressed SHARE``: that share of the bodies is dressed (hair, a cloth margin over rows
    drawn per body); the bare rows are exactly those of the same set without it, the dressed ones
    the same bodies with a wider torso outline, and every stored measurement is the bare body's."""
    from bodyshape.silhouette import as_canvases
    from training.generate import CLOTHED_BOTTOM, CLOTHED_TOP, clothes

    a, b, flags, args = with_and_without(tmp_path, "--dressed", "dressed")
    np.testing.assert_array_equal(flags, [c is not None for c in clothes(5, 0.5, np.arange(8))])
    np.testing.assert_array_equal(a.measurements, b.measurements)  # measured bare
    for view in ("front", "side"):
        bare, worn = as_canvases(getattr(a, view)).astype(int), as_canvases(getattr(b, view)).astype(int)
        np.testing.assert_array_equal(bare[~flags], worn[~flags])  # same poses, cameras, noise
        # the cloth covers the torso: at mid-height (the waist) the dressed outline is wider
        mid = slice(bare.shape[1] * 45 // 100, bare.shape[1] * 50 // 100)
        assert (worn[flags][:, mid].sum((1, 2)) > bare[flags][:, mid].sum((1, 2))).all()
    for c in clothes(5, 1.0, np.arange(50)):
        assert CLOTHED_TOP[0] <= c.rows[0] <= CLOTHED_TOP[1] and CLOTHED_BOTTOM[0] <= c.rows[1] <= CLOTHED_BOTTOM[1]
    assert cli_main([*args, "--dressed", "-0.1", "--out", str(tmp_path / "bad")]) == 2
