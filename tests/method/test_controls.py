"""The study's controls, overhead measurement and prototype-space projection on the tiny model."""

import numpy as np
import pytest
import torch

from de3pipe.modeling.batching import encode_texts
from de3pipe.method.controls import StudyControls, control_arrays, parameter_count
from de3pipe.errors import De3Error
from de3pipe.inference.overhead import measure_overhead
from de3pipe.method.projection import project_prototype_space
from tests.helpers import TEXTS, prototyped_tiny_model


def test_control_head_has_the_prototypical_networks_capacity():
    hidden, dim, k = 32, 16, 3
    controls = StudyControls(5, hidden, dim, k)
    proto_map = torch.nn.Linear(hidden, dim)
    # the map plus K prototypes of size d, against the same map plus d x K output weights (+ K biases)
    assert parameter_count(controls.heads[0]) == parameter_count(proto_map) + k * dim + k


def test_class_means_are_the_no_dar_prototypes_and_survive_a_save(tmp_path):
    pooled = torch.tensor([[[0.0, 2.0]], [[2.0, 4.0]], [[10.0, 10.0]]])  # (N=3, M-1=1, H=2)
    controls = StudyControls(1, 2, 2, 3)
    controls.set_class_means(pooled, torch.tensor([0, 0, 1]))
    assert torch.equal(controls.class_means[0, 0], torch.tensor([1.0, 3.0]))
    assert torch.equal(controls.class_means[0, 1], torch.tensor([10.0, 10.0]))
    assert controls.class_seen.tolist() == [[True, True, False]]
    assert torch.isinf(controls.distances(0, torch.zeros(1, 2), "euclidean")[0, 2])  # unseen class: far away

    controls.save(tmp_path, {"steps": 1})
    loaded = StudyControls.load(tmp_path)
    for (name, a), b in zip(controls.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert StudyControls.load(tmp_path / "nowhere") is None
    (tmp_path / "controls.safetensors").write_bytes(b"garbage")
    with pytest.raises(De3Error, match="study controls .* corrupt.*re-run `de3pipe prototypes`"):
        StudyControls.load(tmp_path)


def test_control_arrays_follow_the_internal_classifiers_prediction():
    rng = np.random.default_rng(0)
    controls = StudyControls(2, 4, 4, 2)
    controls.set_class_means(torch.from_numpy(rng.normal(size=(10, 2, 4))).float(), torch.tensor([0, 1] * 5))
    pooled = rng.normal(size=(6, 3, 4)).astype(np.float32)
    ic = np.log(rng.dirichlet([1, 1], size=(6, 3))).astype(np.float32)
    arrays = control_arrays(controls, pooled, ic, "euclidean", 1e-8)
    assert arrays["control_log_probs"].shape == (6, 2, 2) and arrays["nodar_dr"].shape == (6, 2)
    assert np.exp(arrays["control_log_probs"]).sum(-1) == pytest.approx(np.ones((6, 2)), abs=1e-5)
    # r1 is the distance to the class mean of the IC's predicted class
    u = torch.from_numpy(pooled[:, 0])
    expected = torch.cdist(u, controls.class_means[0]).numpy()[np.arange(6), ic[:, 0].argmax(-1)]
    assert arrays["nodar_r1"][:, 0] == pytest.approx(expected, abs=1e-5)


def _batch_split(tokenizer):
    from de3pipe.modeling.batching import EncodedSplit

    features = encode_texts(tokenizer, TEXTS, None, 32)
    return EncodedSplit(features, np.array([i % 2 for i in range(len(TEXTS))]), np.arange(len(TEXTS)))


def test_overhead_counts_the_prototypical_networks(tiny_model_dir):
    model, tokenizer = prototyped_tiny_model(tiny_model_dir, prototype_dim=8)
    result = measure_overhead(model, tokenizer, _batch_split(tokenizer), batch_size=8, eps=1e-8, seed=0,
                              min_run_time=0.01)
    hidden, n_exits = model.config.hidden_size, model.num_layers - 1
    params = result["parameters"]
    assert params["prototype_networks"] == n_exits * (hidden * 8 + 8)
    assert params["prototype_buffers"] == n_exits * 2 * 8
    assert params["extra_bytes"] == 4 * (params["prototype_networks"] + params["prototype_buffers"])
    flops = result["flops_per_sample"]
    assert flops["prototype_map"] == 2 * hidden * 8  # one (1 x H) @ (H x d) product per sample
    assert flops["de3_signal"] > flops["entropy_signal"] > 0 and flops["layer"] > flops["de3_signal"]
    assert result["batch_size"] == 8 and all(t > 0 for t in result["seconds"].values())


def test_projection_places_samples_and_prototypes_in_one_plane(tiny_model_dir):
    model, _ = prototyped_tiny_model(tiny_model_dir, prototype_dim=8)
    rng = np.random.default_rng(0)
    pooled = rng.normal(size=(20, model.num_layers, model.config.hidden_size)).astype(np.float32)
    labels = np.array([0, 1] * 10)
    out = project_prototype_space(model, pooled, labels, np.zeros((20, model.num_layers), dtype=np.int64))
    assert out["coords"].shape == (model.num_layers - 1, 20, 2)
    assert out["prototypes"].shape == (model.num_layers - 1, 2, 2)
    assert np.isfinite(out["prototypes"]).all() and (0 < out["explained"]).all() and (out["explained"] <= 1).all()
    # PCA centres the samples: their projections average to zero
    assert out["coords"].mean(1) == pytest.approx(np.zeros((model.num_layers - 1, 2)), abs=1e-4)
