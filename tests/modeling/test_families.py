"""Every backbone family on a tiny random model of its real transformers class.

The engine's row dropping for every strategy is checked per family in tests/test_engine.py
(its fixture runs over every family); here: the layer-by-layer path against the family's own
Hugging Face forward, the checkpoint round trip, and the whole pipeline through the CLI.
"""

import inspect
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from de3pipe.modeling.batching import collate, encode_texts
from de3pipe.modeling import load_checkpoint
from de3pipe.modeling import backbone as bb
from de3pipe.modeling.families import FAMILIES, family_for_model_type, family_table, register_family
from tests.helpers import FAMILY_CASES, TEXTS, invoke, prototyped_tiny_model, run_every_stage, stage_overrides


def test_every_registered_family_has_a_test_case():
    covered = {family_for_model_type(model_type).name for model_type in FAMILY_CASES.values()}
    assert covered == set(FAMILIES)


def test_a_family_registers_once():
    with pytest.raises(ValueError, match="already registered"):
        register_family(type(FAMILIES["albert"]))


def _batch(tokenizer):
    """Single texts and sentence pairs of different lengths: padding and token types both occur."""
    features = encode_texts(tokenizer, TEXTS[:6], None, 64) + encode_texts(tokenizer, TEXTS[6:], TEXTS[:6], 64)
    return collate(tokenizer, features)


def _hugging_face_forward(backbone, batch):
    """The family's own forward: its last hidden state, with the inputs its forward accepts."""
    accepted = inspect.signature(backbone.forward).parameters
    inputs = {key: value for key, value in batch.items() if key in accepted}
    return backbone(**inputs).last_hidden_state


@torch.no_grad()
def test_layer_by_layer_path_equals_the_family_forward(family_model_dir):
    model, tokenizer = prototyped_tiny_model(family_model_dir)
    batch = _batch(tokenizer)
    mask = batch["attention_mask"]
    assert (mask[:, -1] == 0).any()  # the batch is padded

    reference = _hugging_face_forward(model.backbone, batch)
    hidden = model.embed(batch["input_ids"], mask, batch.get("token_type_ids"))
    context = model.layer_context(hidden, mask)
    for layer in range(model.num_layers):
        hidden = model.run_layer(layer, hidden, context)
    ours = model.family.exit_hidden(model.backbone, hidden)
    real = mask.bool()
    assert torch.allclose(ours[real], reference[real], atol=1e-5), (ours[real] - reference[real]).abs().max()

    # The full model's logits: our forward's last exit against the same exit head read off the
    # family's own last hidden state (the head's pooler, tanh and classifier by hand).
    logits, _ = model(batch["input_ids"], mask, batch.get("token_type_ids"))
    pooled = bb.pool(reference, mask, model.config.pooling)
    expected = model.classifiers[-1](torch.tanh(model.poolers[-1](pooled)))
    assert torch.allclose(logits[-1], expected, atol=1e-5), (logits[-1] - expected).abs().max()
    # `pytest -s -k layer_by_layer` prints the largest differences (the closing note's figures)
    print(f"\n{family_model_dir.name}: hidden {(ours[real] - reference[real]).abs().max():.2e}, "
          f"logits {(logits[-1] - expected).abs().max():.2e}")


def test_pooling_and_dropout_follow_the_family(family_model_dir):
    model, _ = prototyped_tiny_model(family_model_dir)
    hf = model.backbone.config
    expected_pooling = {"modernbert": "mean"}.get(hf.model_type, "cls")  # the tiny ModernBERT says mean
    assert model.config.pooling == expected_pooling
    assert model.config.classifier_dropout == model.family.classifier_dropout(hf)
    assert model.config.num_layers == hf.num_hidden_layers == len(model.classifiers)


@torch.no_grad()
def test_checkpoint_round_trip_is_exact(family_model_dir, tmp_path):
    model, tokenizer = prototyped_tiny_model(family_model_dir)
    model.save_pretrained(tmp_path / "ckpt", tokenizer)
    loaded, loaded_tokenizer = load_checkpoint(tmp_path / "ckpt", require_stage="prototyped")
    saved = load_file(tmp_path / "ckpt" / "model.safetensors")
    state = loaded.state_dict()
    assert set(saved) == set(state)
    for key, tensor in saved.items():
        assert torch.equal(state[key], tensor), key
    batch = _batch(tokenizer)
    assert torch.equal(collate(loaded_tokenizer, encode_texts(loaded_tokenizer, TEXTS, None, 64))["input_ids"],
                       collate(tokenizer, encode_texts(tokenizer, TEXTS, None, 64))["input_ids"])
    args = (batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
    assert torch.equal(loaded.eval()(*args)[0], model.eval()(*args)[0])


def test_whole_pipeline_through_the_cli(family_model_dir, glue_dir, tmp_path):
    """Both training stages (a few steps each), signals, calibration, evaluation with the live
    engine's wall-clock timing, and predict: every stage runs on every family."""
    run_every_stage(tmp_path, stage_overrides(family_model_dir, glue_dir))
    base = load_file(family_model_dir / "model.safetensors")
    finetuned = load_file(tmp_path / "ft" / "model.safetensors")
    changed = [key for key, tensor in base.items()
               if "backbone." + key in finetuned and not torch.equal(finetuned["backbone." + key], tensor)]
    assert changed  # stage 1 trained the backbone
    assert json.loads((tmp_path / "proto" / "de3pipe.json").read_text())["stage"] == "prototyped"

    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert {row["strategy_name"] for row in metrics["wallclock"]} == {"de3", "entropy"}
    assert np.isfinite([row["wallclock_speedup"] for row in metrics["wallclock"]]).all()

    result = invoke("predict", "--model", tmp_path / "proto", "--thresholds", tmp_path / "calib" / "thresholds.json",
                    "--strategy", "de3", "--target", "2", "a great movie", "a dull mess and boring")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 2 and all("exit_layer=" in line for line in lines)


def test_docs_list_every_family():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    assert family_table() in (root / "config" / "README.md").read_text()  # the table the registry renders
    readme = (root / "README.md").read_text()
    assert all(f"`{family.hub_names[0]}`" in readme for family in FAMILIES.values())
