import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from de3pipe.config import ModelConfig
from de3pipe.errors import De3Error
from de3pipe.modeling import MultiExitModel, load_checkpoint
from de3pipe.modeling.backbone import resolve_model_path
from de3pipe.modeling.families import FAMILIES
from de3pipe.data.tasks import get_task
from tests.helpers import TEXTS, prototyped_tiny_model


def test_structure_follows_the_method(tiny_model_dir):
    model, _ = MultiExitModel.from_base(str(tiny_model_dir), get_task("mnli"), ModelConfig(prototype_dim=8))
    assert len(model.classifiers) == len(model.poolers) == 4
    assert len(model.prototype_nets) == 3  # the last layer needs no exit decision
    assert model.prototypes.shape == (3, 3, 8)
    assert model.config.pooling == "cls"  # a plain BERT folder: [CLS]
    assert model.backbone.pooler is None


def test_poolers_start_from_the_pretrained_pooler(packaged_path):
    from transformers import AutoModel

    pretrained = AutoModel.from_pretrained(str(packaged_path)).pooler.dense.weight
    model, _ = MultiExitModel.from_base("packaged:all-MiniLM-L6-v2", get_task("sst2"), ModelConfig())
    assert model.config.pooling == "mean"  # the sentence-transformers folder says mean pooling
    for pooler in model.poolers:
        assert torch.equal(pooler.weight, pretrained)


def test_prototype_ema_update(tiny_model_dir):
    model, _ = MultiExitModel.from_base(str(tiny_model_dir), get_task("sst2"), ModelConfig(prototype_dim=2))
    z1 = torch.tensor([[[1.0, 1.0], [3.0, 3.0]]]).repeat(3, 1, 1)  # (M-1, B, d), both class 0
    model.update_prototypes(z1, torch.tensor([0, 0]), gamma=0.1)
    assert torch.allclose(model.prototypes[:, 0], torch.tensor([2.0, 2.0]))  # initialised from the batch mean
    assert not model.prototype_seen[:, 1].any() and torch.equal(model.prototypes[:, 1], torch.zeros(3, 2))
    z2 = torch.tensor([[[12.0, 12.0], [5.0, -5.0]]]).repeat(3, 1, 1)
    model.update_prototypes(z2, torch.tensor([0, 1]), gamma=0.1)
    assert torch.allclose(model.prototypes[:, 0], torch.tensor([0.9 * 2 + 0.1 * 12] * 2))
    assert torch.allclose(model.prototypes[:, 1], torch.tensor([5.0, -5.0]))  # first sight: the mean itself
    model.update_prototypes(z2[:, :1], torch.tensor([0]), gamma=0.1)
    assert torch.allclose(model.prototypes[:, 1], torch.tensor([5.0, -5.0]))  # absent: unchanged


def test_save_load_round_trip_is_exact(tiny_model_dir, tmp_path):
    model, tokenizer = prototyped_tiny_model(tiny_model_dir)
    model.save_pretrained(tmp_path / "ckpt", tokenizer)
    loaded, loaded_tokenizer = load_checkpoint(tmp_path / "ckpt", require_stage="prototyped")
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])[0]
        got = loaded(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])[0]
    assert torch.equal(expected, got)
    assert loaded_tokenizer(TEXTS)["input_ids"] == tokenizer(TEXTS)["input_ids"]
    meta = json.loads((tmp_path / "ckpt" / "de3pipe.json").read_text())
    assert meta["stage"] == "prototyped" and meta["label_names"] == ["negative", "positive"]
    assert not list((tmp_path / "ckpt").glob("*.bin")) and not list((tmp_path / "ckpt").glob("*.pt"))


def test_stage_mismatch_is_reported(tiny_model_dir, tmp_path):
    model, tokenizer = MultiExitModel.from_base(str(tiny_model_dir), get_task("sst2"), ModelConfig())
    model.save_pretrained(tmp_path / "stage1", tokenizer)
    with pytest.raises(De3Error, match="stage-1 .* run `de3pipe prototypes`"):
        load_checkpoint(tmp_path / "stage1", require_stage="prototyped")
    model.config.stage = "prototyped"
    model.save_pretrained(tmp_path / "stage2", tokenizer)
    with pytest.raises(De3Error, match="stage-2 .* starts from the stage-1"):
        load_checkpoint(tmp_path / "stage2", require_stage="finetuned")


def test_broken_checkpoints_are_detected(tiny_model_dir, tmp_path):
    model, tokenizer = prototyped_tiny_model(tiny_model_dir)
    folder = tmp_path / "ckpt"
    model.save_pretrained(folder, tokenizer)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(De3Error, match="corrupt or truncated"):
        load_checkpoint(folder)
    weights.unlink()
    with pytest.raises(De3Error, match="no model.safetensors: the checkpoint is incomplete"):
        load_checkpoint(folder)
    with pytest.raises(De3Error, match="does not exist"):
        load_checkpoint(tmp_path / "absent")
    with pytest.raises(De3Error, match="not a de3pipe checkpoint"):
        load_checkpoint(tiny_model_dir)


def test_weights_that_do_not_match_the_config(tiny_model_dir, tmp_path):
    model, tokenizer = prototyped_tiny_model(tiny_model_dir)
    folder = tmp_path / "ckpt"
    model.save_pretrained(folder, tokenizer)
    state = load_file(folder / "model.safetensors")
    del state["classifiers.0.weight"]
    save_file(state, folder / "model.safetensors")
    with pytest.raises(De3Error, match="does not match its configuration"):
        load_checkpoint(folder)


def test_tokenizer_that_does_not_match_the_model(tiny_model_dir, tmp_path):
    model, tokenizer = prototyped_tiny_model(tiny_model_dir)
    folder = tmp_path / "ckpt"
    model.save_pretrained(folder, tokenizer)
    tokenizer.add_tokens(["newtokenone", "newtokentwo"])
    tokenizer.save_pretrained(folder)
    with pytest.raises(De3Error, match="tokenizer .* has 30524 tokens but the model's embeddings hold 30522"):
        load_checkpoint(folder)


def test_model_paths_are_checked(tmp_path):
    with pytest.raises(De3Error, match="does not exist"):
        resolve_model_path(str(tmp_path / "missing-model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(De3Error, match="has no config.json"):
        resolve_model_path(str(tmp_path / "empty"))
    assert resolve_model_path("bert-base-uncased") == "bert-base-uncased"  # a hub name passes through


def test_non_bert_encoder_is_rejected(tmp_path):
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_embd=8, n_head=2).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(De3Error, match="'gpt2' model, which no de3pipe backbone family runs") as error:
        MultiExitModel.from_base(str(tmp_path / "gpt2"), get_task("sst2"), ModelConfig())
    for family in FAMILIES.values():  # the message lists every family and its model types
        assert all(model_type in str(error.value) for model_type in (family.name, *family.model_types))
