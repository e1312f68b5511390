import numpy as np
import pytest
import torch

from bodyshape.body_model import (
    LOCAL_CHANGE_LABELS,
    N_PHENOTYPES,
    N_SHAPE,
    N_VERTICES,
    PHENOTYPE_LABELS,
    SHAPE_LABELS,
    capture_pose,
    get_body_model,
)
from bodyshape.errors import BodyShapeError

FACE_WORDS = ("eye", "nose", "mouth", "ear", "chin", "cheek", "forehead", "eyebrows", "head-")


@pytest.fixture(scope="module")
def model():
    return get_body_model()


def test_shape_labels_are_body_only_and_known_to_anny(model):
    assert len(SHAPE_LABELS) == N_SHAPE == N_PHENOTYPES + len(LOCAL_CHANGE_LABELS)
    assert model.anny.template_vertices.shape[0] == model.n_vertices == N_VERTICES
    assert not [lbl for lbl in LOCAL_CHANGE_LABELS if any(w in lbl for w in FACE_WORDS)]
    assert list(model.anny.local_change_labels) == list(LOCAL_CHANGE_LABELS)


def test_sampler_is_reproducible_and_in_range(model):
    a, b, c = model.sample_shapes(64, 7), model.sample_shapes(64, 7), model.sample_shapes(64, 8)
    assert a.shape == (64, N_SHAPE)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert (a[:, :N_PHENOTYPES] >= 0).all() and (a[:, :N_PHENOTYPES] <= 1).all()
    assert (np.abs(a[:, N_PHENOTYPES:]) <= 0.6 + 1e-6).all()


def test_population_heights_are_adult(model):
    out = model.forward(model.sample_shapes(200, 1))
    z = out.rest_vertices[..., 2]
    h = z.max(1) - z.min(1)
    assert 1.40 < h.min() and h.max() < 2.10, (h.min(), h.max())
    assert 1.60 < np.median(h) < 1.80


def test_forward_shapes_and_bad_vector_length(model):
    s = model.sample_shapes(3, 0)
    out = model.forward(s)
    assert out.vertices.shape == (3, model.n_vertices, 3)
    assert out.faces.shape[1] == 3 and out.faces.max() < model.n_vertices
    with pytest.raises(BodyShapeError, match="shape parameters must have shape"):
        model.forward(s[:, :-1])
    with pytest.raises(BodyShapeError, match="NaN"):
        model.forward(np.full((1, N_SHAPE), np.nan, np.float32))


def test_side_pose_hangs_arms_down_along_the_body(model):
    bl = model.bone_labels
    out = model.anny(pose_parameters=capture_pose("side", 1))
    bp = out["bone_poses"][0, :, :3, 3].numpy()
    for side in ("L", "R"):
        shoulder, wrist = bp[bl.index(f"upperarm01.{side}")], bp[bl.index(f"wrist.{side}")]
        # wrist straight below the shoulder: small forward (y) offset, far lower (z)
        assert abs(wrist[1] - shoulder[1]) < 0.03
        assert shoulder[2] - wrist[2] > 0.4
    # and the rest (front) pose keeps the arms away from the torso
    rest = model.anny()["bone_poses"][0, :, :3, 3].numpy()
    assert rest[bl.index("wrist.L")][0] - rest[bl.index("upperarm01.L")][0] > 0.2


def test_rest_vertices_torch_matches_anny_and_has_gradients(model):
    s = torch.from_numpy(model.sample_shapes(4, 3)).requires_grad_(True)
    fast = model.rest_vertices_torch(s)
    ref = model.forward(s.detach()).rest_vertices
    np.testing.assert_allclose(fast.detach().numpy(), ref, atol=1e-5)
    fast.sum().backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


def _average_body(gender: float) -> np.ndarray:
    s = np.zeros((1, N_SHAPE), np.float32)
    s[0, :N_PHENOTYPES] = 0.5
    s[0, PHENOTYPE_LABELS.index("gender")] = gender
    return s


def test_gender_zero_is_male_and_one_is_female(model):
    """The fact docs/decisions.md and the sampler rely on, read off the meshes themselves:
    at gender 0 the average body is taller with a wider neck and shoulders than its hips
    (male); at gender 1 the hips are wider than the shoulders and the chest (female)."""
    from bodyshape.measurements import get_measurer

    male, female = (get_measurer()(model.forward(_average_body(g)).rest_vertices[0]) for g in (0.0, 1.0))
    assert male["height"] > female["height"] + 0.05
    assert male["neck"] > female["neck"] + 0.03
    assert male["chest"] > male["hip"] and female["hip"] > female["chest"] + 0.05


def test_shared_model_and_measurer_give_the_same_answers_from_many_threads(model):
    """Gradio runs handlers in a thread pool: the shared body model, its seeded sampler and
    the measurer must answer exactly as they do from one thread."""
    from concurrent.futures import ThreadPoolExecutor

    from bodyshape.measurements import get_measurer

    seeds = list(range(8))
    ref_shapes = [model.sample_shapes(2, s) for s in seeds]
    ref_meas = [get_measurer()(model.forward(sh).rest_vertices[0]) for sh in ref_shapes]

    def job(seed: int) -> tuple[np.ndarray, dict]:
        m = get_body_model()  # the same object from every thread
        sh = m.sample_shapes(2, seed)
        return sh, get_measurer()(m.forward(sh).rest_vertices[0])

    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(job, seeds * 3))
    assert torch.rand(1) == before  # seeded sampling leaves the caller's RNG alone
    for i, (sh, meas) in enumerate(got):
        np.testing.assert_array_equal(sh, ref_shapes[i % len(seeds)])
        assert meas == ref_meas[i % len(seeds)]
    assert get_body_model() is model and get_body_model("cpu") is model


def test_shared_holder_builds_once_under_concurrency():
    import threading
    import time

    from bodyshape.shared import Shared

    calls = []

    def build(key):
        calls.append(key)
        time.sleep(0.05)  # a slow build: late arrivals must wait for it, not build another
        return object()

    holder = Shared(build, "test")
    got = []
    threads = [threading.Thread(target=lambda: got.append(holder.get("k"))) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["k"] and len({id(o) for o in got}) == 1
    assert holder.get("other") is not got[0] and calls == ["k", "other"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: per-device copies")
def test_device_copy_leaves_the_cpu_model_on_the_cpu(model):
    gpu = get_body_model("cuda")
    assert gpu is not model and gpu.device.type == "cuda"
    assert model.anny.template_vertices.device.type == "cpu"
    s = torch.from_numpy(model.sample_shapes(2, 0))
    np.testing.assert_allclose(
        gpu.blendshape_coefficients(s.cuda()).cpu().numpy(), model.blendshape_coefficients(s).numpy(), atol=1e-6
    )
