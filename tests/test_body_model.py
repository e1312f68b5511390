import numpy as np
import pytest
import torch

from bodyshape.body_model import (
    LOCAL_CHANGE_LABELS,
    N_SHAPE,
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
    assert len(SHAPE_LABELS) == N_SHAPE == 6 + len(LOCAL_CHANGE_LABELS)
    assert not [lbl for lbl in LOCAL_CHANGE_LABELS if any(w in lbl for w in FACE_WORDS)]
    assert list(model.anny.local_change_labels) == list(LOCAL_CHANGE_LABELS)


def test_sampler_is_reproducible_and_in_range(model):
    a, b, c = model.sample_shapes(64, 7), model.sample_shapes(64, 7), model.sample_shapes(64, 8)
    assert a.shape == (64, N_SHAPE)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert (a[:, :6] >= 0).all() and (a[:, :6] <= 1).all()
    assert (np.abs(a[:, 6:]) <= 0.6 + 1e-6).all()


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
