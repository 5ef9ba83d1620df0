"""The prototype-space projection (de3pipe/method/projection.py): per exit layer, a 2-D PCA of the
samples' embeddings z = W u + b with the prototypes projected into the same plane, checked against
a PCA computed here by hand (an SVD of the centred embeddings), and the file save_projection writes."""

import json

import numpy as np
import pytest
import torch

from de3pipe.method.projection import project_prototype_space, save_projection
from tests.helpers import prototyped_tiny_model

N = 24


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    model, _ = prototyped_tiny_model(tiny_model_dir, prototype_dim=8)
    return model


def inputs(model, n=N, seed=0):
    """Pooled features (N, M, H) as the signal pass keeps them, labels (N,) and predictions (N, M)."""
    rng = np.random.default_rng(seed)
    pooled = rng.normal(size=(n, model.num_layers, model.config.hidden_size)).astype(np.float32)
    labels = (np.arange(n) % 2).astype(np.int32)
    pred = np.arange(n * model.num_layers, dtype=np.int32).reshape(n, model.num_layers) % 2
    return pooled, labels, pred


def embeddings(model, pooled, m) -> np.ndarray:
    with torch.no_grad():
        return model.embed_prototype_space(m, torch.from_numpy(pooled[:, m])).double().numpy()


def test_shapes_and_dtypes(model):
    pooled, labels, pred = inputs(model)
    out = project_prototype_space(model, pooled, labels, pred)
    exits, k = model.num_layers - 1, model.config.num_labels
    assert model.num_layers == 4 and k == 2  # the tiny 4-layer BERT on sst2
    assert set(out) == {"coords", "prototypes", "explained", "labels", "pred"}
    assert out["coords"].shape == (exits, N, 2) and out["coords"].dtype == np.float32
    assert out["prototypes"].shape == (exits, k, 2) and out["prototypes"].dtype == np.float32
    assert out["explained"].shape == (exits,) and out["explained"].dtype == np.float32
    assert ((0 <= out["explained"]) & (out["explained"] <= 1)).all()
    assert out["labels"].dtype == np.int64 and np.array_equal(out["labels"], labels)
    # only the internal classifiers' predictions: the last layer's column is dropped
    assert out["pred"].shape == (N, exits) and out["pred"].dtype == np.int64
    assert np.array_equal(out["pred"], pred[:, :exits])
    assert np.isfinite(out["coords"]).all() and np.isfinite(out["prototypes"]).all()


def test_matches_a_pca_by_hand(model):
    """Each layer's axes are the top two right singular vectors of the centred embeddings (up to
    sign); samples and prototypes go through the same centring and the same axes."""
    pooled, labels, pred = inputs(model, seed=1)
    out = project_prototype_space(model, pooled, labels, pred)
    for m in range(model.num_layers - 1):
        z = embeddings(model, pooled, m)
        mean = z.mean(0)
        _, s, vt = np.linalg.svd(z - mean, full_matrices=False)
        axes = vt[:2].T  # (d, 2)
        expected = (z - mean) @ axes
        signs = np.sign((out["coords"][m] * expected).sum(0))  # PCA may flip an axis
        assert set(signs) <= {-1.0, 1.0}
        np.testing.assert_allclose(out["coords"][m], expected * signs, atol=1e-4)
        centres = model.prototypes[m].double().numpy()
        np.testing.assert_allclose(out["prototypes"][m], (centres - mean) @ axes * signs, atol=1e-4)
        assert out["explained"][m] == pytest.approx((s[:2] ** 2).sum() / (s**2).sum(), rel=1e-5)


def test_a_two_dimensional_space_is_kept_whole(tiny_model_dir):
    """With prototype_dim 2 the two axes hold all the variance, and the projection is a rigid
    motion of the embeddings: distances between samples (and to the prototypes) are preserved."""
    model, _ = prototyped_tiny_model(tiny_model_dir, prototype_dim=2)
    pooled, labels, pred = inputs(model, n=10)
    out = project_prototype_space(model, pooled, labels, pred)
    np.testing.assert_allclose(out["explained"], np.ones(model.num_layers - 1), atol=1e-5)
    for m in range(model.num_layers - 1):
        z = embeddings(model, pooled, m)
        centres = model.prototypes[m].double().numpy()
        xy = out["coords"][m].astype(np.float64)
        np.testing.assert_allclose(np.linalg.norm(xy[:, None] - xy[None], axis=-1),
                                   np.linalg.norm(z[:, None] - z[None], axis=-1), atol=1e-4)
        np.testing.assert_allclose(np.linalg.norm(xy[:, None] - out["prototypes"][m][None], axis=-1),
                                   np.linalg.norm(z[:, None] - centres[None], axis=-1), atol=1e-4)


def test_an_unseen_class_has_no_prototype(tiny_model_dir):
    model, _ = prototyped_tiny_model(tiny_model_dir, prototype_dim=8)
    model.prototype_seen[1, 0] = False  # layer 2 never saw class 0
    pooled, labels, pred = inputs(model)
    out = project_prototype_space(model, pooled, labels, pred)
    assert np.isnan(out["prototypes"][1, 0]).all()
    finite = np.ones(out["prototypes"].shape[:2], dtype=bool)
    finite[1, 0] = False
    assert np.isfinite(out["prototypes"][finite]).all()
    assert bool(model.prototype_seen[1, 0]) is False and bool(model.prototype_seen[1, 1]) is True  # left as it was


def test_save_projection_round_trips(model, tmp_path):
    pooled, labels, pred = inputs(model)
    out = project_prototype_space(model, pooled, labels, pred)
    meta = {"task": "sst2", "split": "validation", "num_layers": model.num_layers}
    path = tmp_path / "signals" / "prototype_space.npz"
    save_projection(path, out, meta)
    with np.load(path, allow_pickle=False) as data:  # no pickled objects: a plain reader opens it
        assert set(data.files) == {"coords", "prototypes", "explained", "labels", "pred", "meta"}
        for key, value in out.items():
            assert data[key].dtype == value.dtype
            np.testing.assert_array_equal(data[key], value)
        assert json.loads(str(data["meta"])) == meta
    first = path.read_bytes()
    save_projection(path, out, meta)  # the same arrays give the same bytes (no timestamps)
    assert path.read_bytes() == first
