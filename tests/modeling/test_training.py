import json

import pytest
import torch
from safetensors.torch import load_file

from de3pipe.data.prepare import PreparedData, prepare_task
from de3pipe.modeling import MultiExitModel, load_checkpoint
from de3pipe.modeling.training import dar_loss, finetune, layer_weights, train_prototypes


@pytest.fixture()
def prepared(tiny_config, tmp_path):
    prepare_task("sst2", tiny_config.data, tiny_config.seed, tmp_path / "data")
    return PreparedData.open(tmp_path / "data")


def test_layer_weights_are_pabee_weights():
    assert layer_weights(4, "linear").tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert layer_weights(4, "uniform").tolist() == pytest.approx([0.25] * 4)


def test_dar_losses():
    distances = torch.tensor([[1.0, 3.0], [2.0, 1.0]])
    labels = torch.tensor([0, 0])
    expected_ce = torch.nn.functional.cross_entropy(-distances, labels)
    assert dar_loss(distances, labels, "ce", 1.0) == pytest.approx(expected_ce.item())
    # margin: max(0, 1 - 3 + 1) = 0 and max(0, 2 - 1 + 1) = 2 -> mean 1
    assert dar_loss(distances, labels, "margin", 1.0) == pytest.approx(1.0)


def test_two_stages_deterministic_and_frozen(prepared, tiny_config, tmp_path, monkeypatch):
    s1 = finetune(prepared, tiny_config, tmp_path / "ft", progress=False)
    assert s1["steps"] == 2 * 5 and len(s1["epochs"]) == 2  # 40 train rows / batch 8, 2 epochs
    finetune(prepared, tiny_config, tmp_path / "ft2", progress=False)
    a, b = load_file(tmp_path / "ft" / "model.safetensors"), load_file(tmp_path / "ft2" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a), "same seed, same weights"
    base = load_file(tiny_config.model.name_or_path + "/model.safetensors")
    assert not torch.equal(a["backbone.encoder.layer.0.attention.self.query.weight"],
                           base["encoder.layer.0.attention.self.query.weight"])

    forward_calls = []
    original = MultiExitModel.forward

    def counting_forward(self, *args, **kwargs):
        forward_calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MultiExitModel, "forward", counting_forward)
    s2 = train_prototypes(prepared, tiny_config, tmp_path / "ft", tmp_path / "proto", progress=False)
    # features cached once: 40 train rows + 20 validation rows in batches of 8, not once per epoch
    assert len(forward_calls) == 5 + 3 and s2["steps"] == 10
    c = load_file(tmp_path / "proto" / "model.safetensors")
    for key in a:
        if key.startswith("prototype"):
            continue
        assert torch.equal(a[key], c[key]), f"{key} changed although the backbone and ICs are frozen"
    assert not torch.equal(a["prototype_nets.0.weight"], c["prototype_nets.0.weight"])
    assert c["prototype_seen"].all()
    model, _ = load_checkpoint(tmp_path / "proto", require_stage="prototyped")
    assert [h["stage"] for h in model.config.history] == ["finetune", "prototypes"]
    assert len(s2["epochs"][-1]["validation_nearest"]) == 3


def test_unfrozen_stage_two_trains_the_backbone(prepared, tiny_config, tmp_path):
    finetune(prepared, tiny_config, tmp_path / "ft", progress=False)
    cfg = tiny_config.model_copy(
        update={"prototypes": tiny_config.prototypes.model_copy(update={"freeze_backbone": False, "max_steps": 2})}
    )
    train_prototypes(prepared, cfg, tmp_path / "ft", tmp_path / "proto", progress=False)
    a, c = load_file(tmp_path / "ft" / "model.safetensors"), load_file(tmp_path / "proto" / "model.safetensors")
    key = "backbone.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(a[key], c[key])


def test_wrong_task_checkpoint(prepared, tiny_config, tmp_path):
    from de3pipe.config import ModelConfig
    from de3pipe.errors import De3Error
    from de3pipe.data.tasks import get_task

    model, tokenizer = MultiExitModel.from_base(tiny_config.model.name_or_path, get_task("rte"), ModelConfig())
    model.save_pretrained(tmp_path / "rte", tokenizer)
    with pytest.raises(De3Error, match="trained on rte, but the data is sst2"):
        train_prototypes(prepared, tiny_config, tmp_path / "rte", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_a_class_first_seen_through_one_example_keeps_stage_two_finite(tiny_model_dir):
    """The NaN case: the prototype of a class whose first batch holds one example equals that
    example's embedding, so its distance is 0, where sqrt's gradient is infinite."""
    from de3pipe.config import ModelConfig
    from de3pipe.data.tasks import get_task

    torch.manual_seed(0)
    model, _ = MultiExitModel.from_base(str(tiny_model_dir), get_task("sst2"), ModelConfig())
    u = torch.randn(model.num_layers - 1, 4, model.config.hidden_size)
    labels = torch.tensor([0, 0, 0, 1])  # class 1: a single example in the first batch
    z = torch.stack([model.embed_prototype_space(m, u[m]) for m in range(model.num_layers - 1)])
    model.update_prototypes(z, labels, gamma=0.1)
    distances = model.distances(0, z[0])
    assert distances[3, 1] < 1e-5  # the example sits on its own prototype
    loss = dar_loss(distances, labels, "ce", 1.0) + dar_loss(distances, labels, "margin", 1.0)
    loss.backward()
    grads = [p.grad for p in model.prototype_nets[0].parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_a_non_finite_loss_stops_stage_two_naming_layer_and_step(prepared, tiny_config, tmp_path, monkeypatch):
    from de3pipe.modeling import training
    from de3pipe.errors import De3Error

    finetune(prepared, tiny_config, tmp_path / "ft", progress=False)
    real, calls = training.dar_loss, []

    def poisoned(distances, labels, kind, margin):
        calls.append(1)
        loss = real(distances, labels, kind, margin)
        return loss * float("nan") if len(calls) == 3 * 3 + 2 else loss  # step 4, layer 2

    monkeypatch.setattr(training, "dar_loss", poisoned)
    with pytest.raises(De3Error, match=r"stage 2 \(prototypes\): the DAR loss of layer 2 is not finite at step 4"):
        train_prototypes(prepared, tiny_config, tmp_path / "ft", tmp_path / "proto", progress=False)
    assert not (tmp_path / "proto").exists()


def test_a_non_finite_gradient_names_its_layer():
    from de3pipe.errors import De3Error
    from de3pipe.modeling.training import make_optimizer, optimizer_step
    from de3pipe.config import OptimConfig

    layers = torch.nn.ModuleDict({"prototype_nets": torch.nn.ModuleList([torch.nn.Linear(2, 2) for _ in range(3)])})
    named = list(layers.named_parameters())
    optimizer, scheduler = make_optimizer(named, OptimConfig(), 10)
    x = torch.tensor([[0.0, 0.0]], requires_grad=False)
    loss = layers["prototype_nets"][0](x).sum() + layers["prototype_nets"][2](x).sum() * torch.tensor(float("inf"))
    before = layers["prototype_nets"][0].weight.detach().clone()
    with pytest.raises(De3Error, match=r"gradient of layer 3 \(prototype_nets.2.weight\) is not finite at step 7"):
        optimizer_step(loss, named, optimizer, scheduler, 1.0, "stage 2 (prototypes)", 6)
    assert torch.equal(layers["prototype_nets"][0].weight, before), "no optimiser step was taken"


def _with_finetune(cfg, **options):
    return cfg.model_copy(update={"finetune": cfg.finetune.model_copy(update=options)})


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_each_precision_is_deterministic(prepared, tiny_config, tmp_path, precision):
    cfg = _with_finetune(tiny_config, precision=precision, max_steps=3)
    summaries = [finetune(prepared, cfg, tmp_path / f"ft{n}", progress=False) for n in range(2)]
    assert summaries[0]["precision"] == {"bf16": "bfloat16", "fp32": "float32"}[precision]
    assert (tmp_path / "ft0" / "model.safetensors").read_bytes() == (tmp_path / "ft1" / "model.safetensors").read_bytes()
    weights = load_file(tmp_path / "ft0" / "model.safetensors")
    assert all(w.dtype == torch.float32 for w in weights.values() if w.is_floating_point()), "fp32 weights"


def test_bf16_and_fp32_train_different_bytes(prepared, tiny_config, tmp_path):
    for precision in ("bf16", "fp32"):
        finetune(prepared, _with_finetune(tiny_config, precision=precision, max_steps=2), tmp_path / precision,
                 progress=False)
    assert (tmp_path / "bf16" / "model.safetensors").read_bytes() != (tmp_path / "fp32" / "model.safetensors").read_bytes()


def test_frozen_word_embeddings_stay_pretrained(prepared, tiny_config, tmp_path):
    summary = finetune(prepared, _with_finetune(tiny_config, freeze_word_embeddings=True, max_steps=3), tmp_path / "ft",
                       progress=False)
    trained = load_file(tmp_path / "ft" / "model.safetensors")
    base = load_file(tiny_config.model.name_or_path + "/model.safetensors")
    assert torch.equal(trained["backbone.embeddings.word_embeddings.weight"], base["embeddings.word_embeddings.weight"])
    assert not torch.equal(trained["backbone.embeddings.position_embeddings.weight"],
                           base["embeddings.position_embeddings.weight"])
    assert 0 <= summary["padding_fraction"] < 1


def test_length_grouping_pads_less(prepared, tiny_config, tmp_path):
    padding = {
        grouped: finetune(prepared, _with_finetune(tiny_config, group_by_length=grouped), tmp_path / str(grouped),
                          progress=False)["padding_fraction"]
        for grouped in (True, False)
    }
    assert padding[True] < padding[False]


def test_auto_precision_follows_the_hardware(monkeypatch):
    from de3pipe.modeling.training import autocast_dtype

    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert autocast_dtype("auto", cpu) == torch.bfloat16
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert autocast_dtype("auto", cpu) is None
    assert autocast_dtype("fp32", cpu) is None and autocast_dtype("bf16", cpu) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert autocast_dtype("auto", torch.device("cuda")) == torch.float16
