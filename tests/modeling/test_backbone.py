"""Loading an encoder (de3pipe/modeling/backbone.py): where a model name points, the config,
weights and tokenizer it loads (with one-line errors), the pooling a checkpoint declares, and
the pooling itself, on the tiny BERT folder, the packaged MiniLM and hand-made folders."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from de3pipe.errors import De3Error
from de3pipe.modeling.backbone import (
    detect_pooling,
    load_config,
    load_pretrained,
    load_tokenizer,
    pool,
    resolve_model_path,
)


@pytest.fixture()
def offline_hub(monkeypatch, tmp_path):
    """The hub unreachable and its cache empty, whatever the environment says."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))


# ---- resolve_model_path ----

@pytest.mark.parametrize("name", ["packaged:all-MiniLM-L6-v2", "packaged:ALL-MINILM-L6-V2"])
def test_the_packaged_model_resolves_to_its_installed_folder(name, packaged_path):
    resolved = resolve_model_path(name)
    assert resolved == str(packaged_path) and (Path(resolved) / "config.json").is_file()


def test_an_unknown_packaged_model():
    with pytest.raises(De3Error) as exc:
        resolve_model_path("packaged:bert-base-uncased")
    assert str(exc.value) == ("unknown packaged model 'bert-base-uncased'; the packaged model is "
                              "packaged:all-MiniLM-L6-v2")


def test_local_folders_resolve_to_themselves_with_home_expanded(tiny_model_dir, tmp_path, monkeypatch):
    assert resolve_model_path(str(tiny_model_dir)) == str(tiny_model_dir)
    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copytree(tiny_model_dir, tmp_path / "models" / "tiny")
    assert resolve_model_path("~/models/tiny") == str(tmp_path / "models" / "tiny")


def test_an_existing_path_without_a_config(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")
    for path in (tmp_path, tmp_path / "weights.bin"):  # a folder, or a file given as the model
        with pytest.raises(De3Error) as exc:
            resolve_model_path(str(path))
        assert str(exc.value) == (f"model folder {path} has no config.json; give a Hugging Face model folder "
                                  "or hub name")


@pytest.mark.parametrize("name", ["bert-base-uncased", "google/electra-small-discriminator"])
def test_hub_names_pass_through(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no folder of that name here
    assert resolve_model_path(name) == name


@pytest.mark.parametrize("name", ["./missing", "/no/such/model", "~/no-such-model", "org/name/extra"])
def test_missing_local_paths(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(De3Error) as exc:
        resolve_model_path(name)
    assert str(exc.value) == f"model path {name} does not exist; give an existing folder or a hub name"


# ---- load_config, load_pretrained, load_tokenizer ----

def test_load_config_of_the_tiny_model(tiny_model_dir):
    config = load_config(str(tiny_model_dir))
    assert (config.model_type, config.num_hidden_layers, config.hidden_size) == ("bert", 4, 32)


def test_a_config_that_is_not_json(tiny_model_dir, tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(De3Error, match=r"^cannot load a model config from '.*broken' \(.*\); offline, use a local "
                                       r"folder or packaged:all-MiniLM-L6-v2$"):
        load_config(str(folder))


def test_a_hub_name_offline(offline_hub):
    with pytest.raises(De3Error) as exc:
        load_config("bert-base-uncased")
    message = str(exc.value)
    assert message.startswith("cannot load a model config from 'bert-base-uncased' (")
    assert message.endswith("); offline, use a local folder or packaged:all-MiniLM-L6-v2")
    assert exc.value.__cause__ is None and exc.value.__suppress_context__


def offline_hub_messages() -> list[str]:
    messages = []
    for load in (load_config, load_tokenizer):
        with pytest.raises(De3Error) as exc:
            load("bert-base-uncased")
        messages.append(str(exc.value))
    return messages


def test_offline_hub_errors_are_one_line(offline_hub):
    for message in offline_hub_messages():
        assert "\n" not in message, message


def test_a_model_type_no_family_runs(tmp_path):
    from transformers import T5Config

    T5Config(num_layers=1, d_model=8, num_heads=2, d_kv=4, d_ff=16).save_pretrained(tmp_path / "t5")
    with pytest.raises(De3Error, match=r"is a 't5' model, which no de3pipe backbone family runs; .*bert \(bert, "
                                       r"roberta"):
        load_config(str(tmp_path / "t5"))


def test_load_pretrained_reads_the_safetensors_weights(tiny_model_dir):
    from safetensors.torch import load_file

    model = load_pretrained(str(tiny_model_dir))
    assert type(model).__name__ == "BertModel" and len(model.encoder.layer) == 4
    stored = load_file(tiny_model_dir / "model.safetensors")
    state = model.state_dict()
    for key, value in stored.items():
        assert torch.equal(state[key], value), key


def test_load_tokenizer(tiny_model_dir, tokenizer, tmp_path):
    loaded = load_tokenizer(tiny_model_dir)  # a Path is accepted too
    assert loaded.vocab_size == tokenizer.vocab_size
    assert loaded("a great movie")["input_ids"] == tokenizer("a great movie")["input_ids"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(De3Error, match=r"^cannot load a tokenizer from .*empty: "):
        load_tokenizer(tmp_path / "empty")


# ---- detect_pooling ----

def pooling_folder(tmp_path, **modes) -> Path:
    folder = tmp_path / "st-model"
    (folder / "1_Pooling").mkdir(parents=True)
    settings = {"word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": False,
                "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False} | modes
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(settings))
    return folder


def test_sentence_transformers_folders_declare_their_pooling(tmp_path, packaged_path):
    assert detect_pooling(str(packaged_path), "cls") == "mean"  # all-MiniLM-L6-v2 is mean-pooled
    assert detect_pooling(str(pooling_folder(tmp_path, pooling_mode_mean_tokens=True)), "cls") == "mean"
    shutil.rmtree(tmp_path / "st-model")
    assert detect_pooling(str(pooling_folder(tmp_path, pooling_mode_cls_token=True)), "mean") == "cls"


def test_without_a_pooling_file_the_familys_default(tiny_model_dir, offline_hub):
    # the tiny folder has no 1_Pooling/: the default given is returned, whichever it is
    assert detect_pooling(str(tiny_model_dir), "cls") == "cls"
    assert detect_pooling(str(tiny_model_dir), "mean") == "mean"
    # a hub name while offline: the hub cannot be asked, so the default too
    assert detect_pooling("sentence-transformers/all-MiniLM-L6-v2", "cls") == "cls"


# ---- pool ----

def test_cls_pooling_takes_the_first_token():
    hidden = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert torch.equal(pool(hidden, mask, "cls"), torch.tensor([[0.0, 1.0], [6.0, 7.0]]))


def test_mean_pooling_averages_the_unmasked_tokens():
    hidden = torch.tensor([[[1.0, 10.0], [3.0, 20.0], [100.0, 100.0]],
                           [[4.0, -4.0], [100.0, 100.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])  # padding (100s) must not count
    assert torch.equal(pool(hidden, mask, "mean"), torch.tensor([[2.0, 15.0], [4.0, -4.0]]))


def test_mean_pooling_of_a_row_without_tokens_is_zero_not_nan():
    hidden = torch.ones(2, 2, 3)
    mask = torch.tensor([[1, 1], [0, 0]])
    pooled = pool(hidden, mask, "mean")
    assert torch.equal(pooled, torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]))


def test_mean_pooling_keeps_the_hidden_dtype():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]], dtype=torch.bfloat16)
    pooled = pool(hidden, torch.tensor([[1, 1]]), "mean")
    assert pooled.dtype == torch.bfloat16 and torch.equal(pooled, torch.tensor([[2.0, 3.0]], dtype=torch.bfloat16))
