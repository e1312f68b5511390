"""A tiny end-to-end training run: loss goes down, staged init copies the encoders, the run
stays in its run folder, resumes are checked, and `bodyshape ship` is the one way to ship."""

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bodyshape import paths
from bodyshape.checkpoint import load_model, read_metadata, read_train_config
from bodyshape.cli import main as cli_main
from bodyshape.errors import BodyShapeError
from training.config import DataConfig, run_dir, stage_config
from training.generate import generate
from training.train import TrainConfig, build_stage_model, main


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Train every stage with the run given by name, in a RUNS_DIR of its own."""
    root = tmp_path_factory.mktemp("train")
    # coverage canvases: the network trains on their 0/1 bodies, fit-correction reads them whole
    generate(DataConfig(n=240, seed=5, shard_size=120, silhouettes="coverage"), root / "data", workers=1, progress=False)
    cfg = TrainConfig(
        data=str(root / "data"), out="tiny",
        val_size=40, batch_size=32, epoch_samples=160, threads=2,
        samples={"front": 640, "side": 640, "fused_staged": 640}, net={"widths": (8, 8, 12, 12, 16), "feature_dim": 64, "head_hidden": 64},
    )
    shipped_before = digests(paths.WEIGHTS_DIR)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(paths, "RUNS_DIR", root / "runs")
        summaries = main(cfg)
    shipped_after = digests(paths.WEIGHTS_DIR)
    # from here on the run is named by its path: the same run (``out`` is not part of a stage's config)
    cfg = dataclasses.replace(cfg, out=str(root / "runs" / "tiny"))
    return cfg, summaries, root, (shipped_before, shipped_after)


def test_training_writes_only_into_its_run_folder(trained):
    cfg, _, root, (before, after) = trained
    assert before and after == before  # the shipped weights are byte-identical
    run = root / "runs" / "tiny"
    assert sorted(p.name for p in (run / "weights").iterdir()) == [
        "front.safetensors", "fused.safetensors", "fused_scratch.safetensors", "side.safetensors"]
    assert (run / "loss_curves.png").exists() and (run / "front" / "config.json").exists()
    assert not (paths.REPO_DIR / "runs" / "tiny").exists()


def test_loss_goes_down_in_every_stage(trained):
    _, summaries, _, _ = trained
    assert set(summaries) == {"front", "side", "fused_staged", "fused_scratch"}
    for stage, s in summaries.items():
        hist = s["history"]
        assert len(hist) >= 2, stage
        assert hist[-1]["train_loss"] < hist[0]["train_loss"], (stage, hist)


def test_scratch_gets_the_same_total_budget(trained):
    cfg, summaries, _, _ = trained
    assert summaries["fused_scratch"]["samples"] == (640 // 2 + 640 // 2 + 640) // 32 * 32


def test_staged_init_copies_single_view_encoders(trained):
    cfg, _, _, _ = trained
    fused = build_stage_model(cfg, "fused_staged")
    for view in ("front", "side"):
        single = torch.load(run_dir(cfg.out) / view / "final.pt", weights_only=False)["model"]
        for name, tensor in fused.encoders[view].state_dict().items():
            torch.testing.assert_close(tensor, single[f"encoders.{view}.{name}"], rtol=0, atol=0)
    scratch = build_stage_model(cfg, "fused_scratch")
    w = next(iter(scratch.encoders["front"].state_dict().values()))
    assert not torch.equal(w, next(iter(fused.encoders["front"].state_dict().values())))


def test_resume_skips_finished_stages_and_weights_rebuild(trained):
    cfg, summaries, root, _ = trained
    again = main(cfg)  # every stage finished: nothing retrained
    assert json.dumps(again["fused_scratch"]) == json.dumps(summaries["fused_scratch"])
    weights = run_dir(cfg.out) / "weights" / "fused.safetensors"
    model = load_model(weights)
    _, info = read_metadata(weights)
    assert info["trained"] and info["stage"] == "fused_staged"
    x = torch.zeros(2, 1, 128, 96)
    with torch.no_grad():
        y = model(x, x, torch.tensor([1.6, 1.8]))
    assert y.shape == (2, 20) and torch.isfinite(y).all()
    assert not np.allclose(y[0].numpy(), y[1].numpy())  # the height input is used


def test_time_budget_stage_ends_on_time_and_keeps_the_best(trained, tmp_path):
    """A stage with a time budget runs its schedule on elapsed time (the one-GPU recipe)."""
    import time

    cfg, _, _, _ = trained
    timed = dataclasses.replace(cfg, out=str(tmp_path / "run"), stages=("front",),
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

    cfg, _, root, _ = trained
    ds = load_dataset(root / "data")
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    plain = Batches(ds, dataclasses.replace(cfg, p_flip=0.0)).sample(rng_a)
    flipped = Batches(ds, dataclasses.replace(cfg, p_flip=1.0)).sample(rng_b)
    torch.testing.assert_close(flipped[0], plain[0].flip(-1))
    torch.testing.assert_close(flipped[1], plain[1].flip(-1))
    torch.testing.assert_close(flipped[3], plain[3])  # same people, same labels


def test_random_phase_reads_each_sample_at_one_of_the_served_looks(trained, tmp_path):
    """With ``random_phase`` each training canvas is one of the 8 sub-pixel looks the served
    reader averages (phases vary across the batch, not only look 0); other inputs unchanged;
    a 0/1 dataset is refused with the command that makes a coverage one."""
    from bodyshape.nets import subpixel_looks
    from bodyshape.silhouette import SUBPIXEL_PHASES
    from training.dataset import load_dataset
    from training.train import Batches

    cfg, _, root, _ = trained
    ds = load_dataset(root / "data")
    plain = Batches(ds, dataclasses.replace(cfg, p_flip=0.0)).sample(np.random.default_rng(2))
    f, s, h, y = Batches(ds, dataclasses.replace(cfg, p_flip=0.0, random_phase=True)).sample(np.random.default_rng(2))
    idx = np.random.default_rng(2).integers(0, len(ds), cfg.batch_size)  # the rows Batches draws first
    torch.testing.assert_close(y, plain[3])
    torch.testing.assert_close(h, plain[2])
    for got, stored in ((f, ds.front[idx]), (s, ds.side[idx])):
        looks = subpixel_looks(torch.from_numpy(np.asarray(stored)), SUBPIXEL_PHASES).reshape(
            SUBPIXEL_PHASES, len(idx), 1, *ds.canvas_hw)
        phase = [[k for k in range(SUBPIXEL_PHASES) if torch.equal(got[b], looks[k, b])] for b in range(len(idx))]
        assert all(phase), "every canvas is one of the served looks"
        assert len({p[-1] for p in phase}) > 2, "phases vary across the batch"
    assert not torch.equal(f, plain[0])

    bits = tmp_path / "bits"
    generate(DataConfig(n=8, seed=5, shard_size=8), bits, workers=1, progress=False)
    with pytest.raises(BodyShapeError, match="--silhouettes coverage"):
        Batches(load_dataset(bits), dataclasses.replace(cfg, random_phase=True))


def test_partial_load_reads_finished_shards_only(trained, tmp_path):
    import shutil

    from training.dataset import load_dataset

    _, _, root, _ = trained
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
    cfg, _, root, _ = trained
    fused = run_dir(cfg.out) / "weights" / "fused.safetensors"
    start = dataclasses.replace(cfg, init=str(fused))
    model = build_stage_model(start, "fused_staged")
    shipped = load_model(fused)
    for name, tensor in shipped.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], tensor, rtol=0, atol=0)
    other = dataclasses.replace(start, net={"widths": (8, 8, 12, 12, 24), "feature_dim": 64, "head_hidden": 64})
    with pytest.raises(BodyShapeError, match="another network"):
        build_stage_model(other, "fused_staged")


def test_resume_with_another_config_is_refused_and_config_json_kept(trained):
    cfg, _, _, _ = trained
    stored = run_dir(cfg.out) / "front" / "config.json"
    before = stored.read_bytes()
    with pytest.raises(BodyShapeError, match=r"stage front in .* different configuration: lr \(was 0.002, now 0.001\)"):
        main(dataclasses.replace(cfg, lr=1e-3))
    with pytest.raises(BodyShapeError, match=r"stage fused_scratch .*samples \(was 1280, now 1600\)"):
        main(dataclasses.replace(cfg, stages=("fused_scratch",), samples={**cfg.samples, "fused_staged": 960}))
    main(dataclasses.replace(cfg, threads=1, stages=("front",)))  # run-only settings may change
    assert stored.read_bytes() == before  # the configuration a stage started with is never rewritten
    # a stage stored before random_phase existed trained on the 0/1 body: it resumes as such
    try:
        stored.write_text(json.dumps({k: v for k, v in json.loads(before).items() if k != "random_phase"}))
        main(dataclasses.replace(cfg, threads=1, stages=("front",)))
        with pytest.raises(BodyShapeError, match=r"random_phase \(was False, now True\)"):
            main(dataclasses.replace(cfg, stages=("front",), random_phase=True))
    finally:
        stored.write_bytes(before)


def test_final_weights_carry_their_training_config(trained):
    cfg, _, _, _ = trained
    for stage, name in (("front", "front"), ("fused_staged", "fused")):
        stored = read_train_config(run_dir(cfg.out) / "weights" / f"{name}.safetensors")
        assert stored["lr"] == cfg.lr and stored["net"]["widths"] == [8, 8, 12, 12, 16]
        assert stage_config(stored, stage)["samples"] == 640
    # a shipped file made before the configuration was stored (the GPU recipe's front net) still loads
    assert read_train_config(paths.WEIGHTS_DIR / "front.safetensors") is None
    load_model(paths.WEIGHTS_DIR / "front.safetensors")
    # the served fused net (the second random-phase fine-tune) records what it was fine-tuned from and how
    shipped = read_train_config(paths.WEIGHTS_DIR / "fused.safetensors")
    assert shipped["init"] == "bodyshape/weights/fused.safetensors" and shipped["out"] == "runs/phase45_cpu"
    assert shipped["random_phase"] is True and shipped["data"] == "data/train_wide45"


def test_ship_copies_the_chosen_stages_under_the_chosen_names(trained, tmp_path, capsys):
    cfg, _, _, _ = trained
    to = tmp_path / "weights"
    args = ["ship", cfg.out, "--stages", "front", "fused_staged=fused_equal_budget", "--to", str(to), "--no-export"]
    assert cli_main(args) == 0
    src = run_dir(cfg.out) / "weights"
    assert digests(to) == {"front.safetensors": digests(src)["front.safetensors"],
                           "fused_equal_budget.safetensors": digests(src)["fused.safetensors"]}
    assert read_train_config(to / "fused_equal_budget.safetensors")["samples"]["fused_staged"] == 640
    load_model(to / "fused_equal_budget.safetensors")
    assert "needs no export" in capsys.readouterr().out  # fused.safetensors did not change


def test_ship_refuses_bad_stage_names_before_copying(trained, tmp_path, capsys):
    cfg, _, _, _ = trained
    to = tmp_path / "weights"
    for spec, message in (("fused_stage", "unknown stage"), ("front=../x", "plain name"), ("front=fused", "two-view")):
        assert cli_main(["ship", cfg.out, "--stages", "side", spec, "--to", str(to), "--no-export"]) == 2
        assert message in capsys.readouterr().err
    assert not to.exists() or not list(to.iterdir())  # all or nothing
    assert cli_main(["ship", str(tmp_path / "no/such_run")]) == 2
    assert "holds no trained weights" in capsys.readouterr().err


def test_ship_of_the_served_model_reexports_the_repository(trained, tmp_path):
    from training.ship import ship

    cfg, _, _, _ = trained
    written = ship(cfg.out, ["fused_staged"], to=tmp_path / "weights", repository=tmp_path / "repo")
    assert written == [tmp_path / "weights" / "fused.safetensors"]
    info = json.loads((tmp_path / "repo" / "body_shape" / "1" / "export_info.json").read_text())
    assert info["weights_sha256"] == hashlib.sha256(written[0].read_bytes()).hexdigest()
    assert (tmp_path / "repo" / "body_shape" / "1" / "model.onnx").exists()


def test_ship_takes_the_correction_and_intervals_fitted_for_the_shipped_weights(trained, tmp_path, capsys):
    """The per-model files travel with the served model only when they were fitted for its
    bytes; a stale correction ships neither (the intervals are those of corrected numbers)."""
    import shutil

    from bodyshape.correction import CORRECTION_FILE, CORRECTION_FILES, MeasurementCorrection, build_net
    from bodyshape.measurements import MEASUREMENT_NAMES
    from bodyshape.uncertainty import INTERVALS_FILE, IntervalModel, file_sha256
    from training.ship import ship

    cfg, _, _, _ = trained
    run = tmp_path / "run"
    shutil.copytree(run_dir(cfg.out) / "weights", run / "weights")
    sha = file_sha256(run / "weights" / "fused.safetensors")

    def companions(fitted_for: str) -> None:
        MeasurementCorrection([build_net(4, 8)], np.zeros(4), np.ones(4), {"weights_sha256": fitted_for}).save(
            run / "weights" / CORRECTION_FILE)
        m = len(MEASUREMENT_NAMES)
        IntervalModel(MEASUREMENT_NAMES, (0.01,) * m, (-1.0,) * m, (1.0,) * m, weights_sha256=sha).save(
            run / "weights" / INTERVALS_FILE)

    companions("0" * 64)  # a correction of other weights
    to = tmp_path / "stale"
    written = ship(str(run), ["fused_staged"], to=to, export=False)
    assert written == [to / "fused.safetensors"] and sorted(p.name for p in to.iterdir()) == ["fused.safetensors"]
    out = capsys.readouterr().out
    assert "fitted for other weights; run `bodyshape fit-correction`" in out and "then `bodyshape calibrate-intervals`" in out
    companions(sha)
    to = tmp_path / "fresh"
    written = ship(str(run), ["fused_staged"], to=to, export=False)
    assert [p.name for p in written] == ["fused.safetensors", CORRECTION_FILE, INTERVALS_FILE]
    for p in written:
        assert file_sha256(p) == file_sha256(run / "weights" / p.name)
    assert "(fitted per model)" not in capsys.readouterr().out
    # fitted clothing's own correction (optional) travels the same way; one of other weights goes
    fitted = CORRECTION_FILES["fitted"]
    shutil.copy(run / "weights" / CORRECTION_FILE, run / "weights" / fitted)
    written = ship(str(run), ["fused_staged"], to=to, export=False)
    assert [p.name for p in written] == ["fused.safetensors", CORRECTION_FILE, fitted, INTERVALS_FILE]
    (run / "weights" / fitted).unlink()
    MeasurementCorrection([build_net(4, 8)], np.zeros(4), np.ones(4), {"weights_sha256": "0" * 64}).save(to / fitted)
    written = ship(str(run), ["fused_staged"], to=to, export=False)
    assert [p.name for p in written] == ["fused.safetensors", CORRECTION_FILE, INTERVALS_FILE]
    assert not (to / fitted).exists() and f"removed {to / fitted}" in capsys.readouterr().out


def test_evaluate_with_empty_strong_skips_it(trained, tmp_path):
    cfg, _, root, _ = trained
    out = tmp_path / "eval.md"
    args = ["evaluate", "--weights", str(run_dir(cfg.out) / "weights"), "--test", str(root / "data"),
            "--strong", "", "--n", "20", "--out", str(out), "--splits", "none"]
    assert cli_main(args) == 0
    res = json.loads(out.with_suffix(".json").read_text())
    assert res["n"] == 20 and "fused, staged, GPU recipe (shipped)" in res["models"]
    assert not any("strong_noise" in r for r in res["models"].values())


def test_train_cli_fine_tunes_a_fused_model_file(trained, tmp_path, capsys):
    """``bodyshape train --init FILE --stages fused_staged``: the whole model trains from FILE, nothing frozen."""
    from bodyshape.checkpoint import save_model
    from bodyshape.nets import BodyShapeNet, NetConfig

    _, _, root, _ = trained
    start = save_model(BodyShapeNet(NetConfig(widths=(8, 8, 12, 12, 16))), tmp_path / "start.safetensors")
    args = ["train", "--data", str(root / "data"), "--out", str(tmp_path / "ft"), "--val-size", "40",
            "--batch-size", "32", "--epoch-samples", "64", "--widths", "8", "8", "12", "12", "16",
            "--samples", "0", "0", "64", "--init", str(start), "--lr", "0.0005"]
    assert cli_main([*args, "--stages", "front", "fused_staged"]) == 2
    assert "--stages fused_staged only" in capsys.readouterr().err
    assert cli_main([*args, "--stages", "fused_staged"]) == 0
    stored = json.loads((tmp_path / "ft" / "fused_staged" / "config.json").read_text())
    assert stored["init"] == str(start) and stored["lr"] == 0.0005
    assert stored["frozen_fraction"] == 0.0 and stored["finetune_lr_scale"] == 1.0
    tuned = load_model(tmp_path / "ft" / "weights" / "fused.safetensors").state_dict()
    first = load_model(start).state_dict()
    changed = [k for k in first if not torch.equal(first[k], tuned[k])]
    assert any(k.startswith("encoders.") and k.endswith("weight") for k in changed), changed  # encoders trained too


def test_fit_correction_writes_a_correction_for_the_given_weights(trained, tmp_path, capsys):
    """`bodyshape fit-correction` on the tiny run's data and fused model: a loadable ensemble
    for exactly those weights, written next to them (never into the shipped folder); the
    features are cached and a cache of other weights is refused."""
    import shutil

    from bodyshape.correction import CORRECTION_FILE, MeasurementCorrection
    from bodyshape.uncertainty import file_sha256
    from training.fit_correction import cached_features

    cfg, _, root, _ = trained
    weights = tmp_path / "weights"
    weights.mkdir()
    shutil.copy(Path(cfg.out) / "weights" / "fused.safetensors", weights / "fused.safetensors")
    shipped_before = digests(paths.WEIGHTS_DIR)
    args = ["fit-correction", "--data", str(root / "data"), "--n", "200", "--recapture-noise", "0", "--weights", str(weights),
            "--cache", str(tmp_path / "cache"), "--members", "2", "--epochs", "3"]  # fmt: skip
    assert cli_main(args) == 0
    model = MeasurementCorrection.load(weights / CORRECTION_FILE)
    assert len(model.nets) == 2 and model.info["weights_sha256"] == file_sha256(weights / "fused.safetensors")
    assert "200 rows" not in model.info["trained_on"] and "rows 0-199" in model.info["trained_on"]
    assert digests(paths.WEIGHTS_DIR) == shipped_before
    chunk = tmp_path / "cache" / "features_000000.npz"
    stamp = chunk.stat().st_mtime_ns
    assert cli_main(args) == 0 and chunk.stat().st_mtime_ns == stamp  # resumed from the cache
    assert "held-out rows" in capsys.readouterr().out
    # --init fine-tunes a saved correction: its networks and input scaling; no epoch better on
    # the held-out rows than where it started gives it back unchanged
    saved = tmp_path / "start.safetensors"
    shutil.copy(weights / CORRECTION_FILE, saved)
    start = MeasurementCorrection.load(saved)
    probe = np.asarray(cached_features(weights / "fused.safetensors", root / "data", 200, tmp_path / "cache")["inputs"])
    assert cli_main([*args[:-4], "--init", str(saved), "--epochs", "0"]) == 0
    tuned = MeasurementCorrection.load(weights / CORRECTION_FILE)
    np.testing.assert_array_equal(tuned.change(probe), start.change(probe))
    assert tuned.info["fine_tuned_from"]["file"] == str(saved) and tuned.info["epochs"] == [-1, -1]
    assert "best the start (unchanged)" in capsys.readouterr().out
    from bodyshape.correction import build_net

    other = MeasurementCorrection([build_net(5, 8)], np.zeros(5), np.ones(5), {}).save(tmp_path / "other.safetensors")
    assert cli_main([*args[:-4], "--init", str(other)]) == 2  # another version's inputs: a clear error
    assert "cannot be fine-tuned" in capsys.readouterr().err
    assert cli_main([*args[:-4], "--init", str(saved), "--epochs", "5"]) == 0
    tuned = MeasurementCorrection.load(weights / CORRECTION_FILE)
    np.testing.assert_array_equal(tuned.mean, start.mean)  # the inputs scaled as the start's networks read them
    assert len(tuned.nets) == 2 and tuned.info["fine_tuned_from"]["lr"] == 3e-4
    # several datasets pool their rows, each with its own cache (here the same set twice)
    pooled = [*args[:-6], "--data", str(root / "data"), str(root / "data"), "--cache", str(tmp_path / "cache"),
              str(tmp_path / "cache4"), *args[-4:]]  # fmt: skip
    assert cli_main(pooled) == 0 and chunk.stat().st_mtime_ns == stamp
    info = MeasurementCorrection.load(weights / CORRECTION_FILE).info["trained_on"]
    assert info.count("rows 0-199") == 2, info
    assert cli_main([*pooled[:-7], "--cache", str(tmp_path / "cache"), *args[-4:]]) == 2  # two sets, one cache folder
    assert "one --cache folder per --data set" in capsys.readouterr().err
    # two processes over four chunks give the features one process gave over one
    parallel = [*args[:-6], "--cache", str(tmp_path / "cache2"), "--chunk", "50", "--workers", "2", *args[-4:]]
    assert cli_main(parallel) == 0
    assert len(list((tmp_path / "cache2").glob("features_*.npz"))) == 4 and not list((tmp_path / "cache2").glob("*.tmp*"))
    one, two = (cached_features(weights / "fused.safetensors", root / "data", 200, tmp_path / c, chunk=k)
                for c, k in (("cache", 500), ("cache2", 50)))  # fmt: skip
    for k in one:
        np.testing.assert_allclose(one[k], two[k], rtol=1e-4, atol=1e-5)
    # a larger n redoes the short last chunk a smaller n left
    cached_features(weights / "fused.safetensors", root / "data", 120, tmp_path / "cache2", chunk=50, workers=1)
    assert len(np.load(tmp_path / "cache2" / "features_000100.npz")["truth"]) == 20
    grown = cached_features(weights / "fused.safetensors", root / "data", 200, tmp_path / "cache2", chunk=50, workers=1)
    np.testing.assert_array_equal(grown["truth"], two["truth"])
    # features measured under older measurement definitions are refused, as are other weights'
    key = tmp_path / "cache" / "cache.json"
    today = key.read_text()
    key.write_text(json.dumps({**json.loads(today), "definitions": 1}))
    assert cli_main(args) == 2
    assert "holds features of other data, weights or measurement definitions" in capsys.readouterr().err
    key.write_text(today)
    shutil.copy(Path(cfg.out) / "weights" / "fused_scratch.safetensors", weights / "fused.safetensors")
    assert cli_main(args) == 2
    assert "holds features of other data, weights or measurement definitions" in capsys.readouterr().err
    # a set of 0/1 bodies lacks the sub-pixel edges the page's canvases have: refused
    generate(DataConfig(n=4, seed=5, shard_size=4), tmp_path / "bits", workers=1, progress=False)
    assert cli_main(["fit-correction", "--data", str(tmp_path / "bits"), "--weights", str(weights),
                     "--cache", str(tmp_path / "cache3")]) == 2  # fmt: skip
    assert "--silhouettes coverage" in capsys.readouterr().err


def test_recapture_noise_steadies_the_correction():
    """Re-capture deviations as training noise (training/recaptures.py, fit_member). The
    deviations have each person's captures centred and the variance of one capture. Then a
    toy correction: input 0 is the network's measurement (truth plus a small error), input 1
    an outline cue (truth plus a larger error); the target is the truth less the measurement.
    Re-captures move only input 0. Without noise the corrected number (measurement plus
    correction) leans on the measurement; trained with the noise and the target moving with
    it, it follows the cue, which a re-capture leaves alone; with the target held, the
    correction itself stops reading what a re-capture moves."""
    from training.fit_correction import fit_member
    from training.recaptures import person_sd, recapture_deviations

    rng = np.random.default_rng(0)
    person = np.repeat(np.arange(20), 6)
    jitter = rng.normal(0, 0.8, len(person))
    captures = np.stack([jitter, np.zeros(len(person))], 1).astype(np.float32)
    dev = recapture_deviations(captures, person)
    for p in range(20):
        assert abs(dev[person == p].mean(0)).max() < 1e-5
    assert 0.6 < dev[:, 0].std() < 1.0 and not dev[:, 1].any()
    np.testing.assert_allclose(person_sd(captures, person)[0], np.mean([jitter[person == p].std(ddof=1) for p in range(20)]),
                               rtol=1e-5)  # fmt: skip

    truth = rng.normal(size=1200)
    x = np.stack([truth + 0.3 * rng.normal(size=1200), truth + 0.6 * rng.normal(size=1200)], 1).astype(np.float32)
    y = np.repeat((truth - x[:, 0])[:, None], 16, axis=1).astype(np.float32)
    holdout = rng.random(len(x)) < 0.1
    probe = torch.tensor([[0.0, 0.0], [1.0, 0.0]])  # a re-capture moved the measurement by 1

    def slopes(scale: float, moving: bool) -> tuple[float, float]:
        """How much the correction and the corrected number move with the probe."""
        shift = np.repeat(dev[:, :1], 16, axis=1) if moving else None
        net = fit_member(x, y, holdout, 32, 30, 0, dev, scale, shift)[0]
        with torch.no_grad():
            moved = float((net(probe)[1] - net(probe)[0]).mean())
        return moved, 1.0 + moved

    _, corrected_plain = slopes(0.0, False)
    _, corrected_held = slopes(2.0, True)
    correction_fixed, _ = slopes(2.0, False)
    assert corrected_plain > 0.5  # the measurement is the better input on the training rows
    assert abs(corrected_held) < 0.5 * corrected_plain
    assert abs(correction_fixed) < 0.25
