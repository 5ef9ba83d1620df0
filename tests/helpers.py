"""Builders shared by several test modules."""

from __future__ import annotations

import numpy as np
import torch

from de3pipe.config import ModelConfig
from de3pipe.modeling import MultiExitModel
from de3pipe.data.tasks import get_task

# The toy SST-2 folder's words (conftest.write_sst2)
POSITIVE = ["a great movie", "wonderful and moving", "i loved it", "brilliant acting", "a joy to watch", "superb"]
NEGATIVE = ["a dull mess", "boring and long", "i hated it", "terrible acting", "a waste of time", "awful"]

TEXTS = [
    "a great movie",
    "the plot was thin but the actors carried it through every single scene",
    "bad",
    "i would not recommend this film to anyone i know",
    "surprisingly touching",
    "an overlong, self-indulgent and ultimately pointless exercise in style over substance",
    "fine",
    "the best thing i have seen all year",
    "meh",
    "it has moments",
    "two hours of my life i will never get back",
    "charming",
]


def prototyped_tiny_model(tiny_model_dir, task: str = "sst2", seed: int = 0, **model_options):
    """The tiny random model with random (seen) prototypes, as if stage 2 had run."""
    torch.manual_seed(seed)
    model, tokenizer = MultiExitModel.from_base(str(tiny_model_dir), get_task(task), ModelConfig(**model_options))
    with torch.no_grad():
        for classifier in model.classifiers:  # larger logits: a spread of entropies, like a trained model
            classifier.weight.mul_(20)
        model.prototypes.normal_()
        model.prototype_seen.fill_(True)
    model.config.stage = "prototyped"
    return model.eval(), tokenizer


# ---- one tiny random model per backbone family, with its family's real tokenizer type ----
# Offline, no family's published tokenizer files can be fetched, so each tokenizer is built here
# from a small vocabulary of the test texts (plus single characters, so any text encodes).
_WORDS = sorted(set(" ".join(TEXTS + POSITIVE + NEGATIVE).replace(",", " ").split()))
_CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789,.'!?-")
TINY_SIZES = {"hidden_size": 32, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 64,
              "max_position_embeddings": 128}


def _unigram_vocab(specials: list[str]) -> list[tuple[str, float]]:
    """A SentencePiece-style unigram vocabulary: specials, whole words, then single characters."""
    return ([(token, 0.0) for token in specials] + [("▁", -5.0)] + [("▁" + word, -2.0) for word in _WORDS]
            + [(char, -10.0) for char in _CHARS])


def _byte_level_bpe():
    """ModernBERT's kind of tokenizer: byte-level BPE with [CLS]/[SEP] templates, trained on the texts."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(TEXTS + POSITIVE + NEGATIVE, trainer)
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", backend.token_to_id("[CLS]")), ("[SEP]", backend.token_to_id("[SEP]"))],
    )
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                                   pad_token="[PAD]", mask_token="[MASK]")


def _special_ids(tokenizer) -> dict[str, int]:
    return {"pad_token_id": tokenizer.pad_token_id, "cls_token_id": tokenizer.cls_token_id,
            "sep_token_id": tokenizer.sep_token_id}


def build_family_model(case: str, bert_tokenizer, folder):
    """Save a tiny random encoder of ``case`` (a family, or a variant of one) with its tokenizer
    into ``folder``; returns the folder."""
    import transformers as hf

    torch.manual_seed(0)
    if case == "bert":
        tokenizer = bert_tokenizer
        model = hf.BertModel(hf.BertConfig(vocab_size=tokenizer.vocab_size, **TINY_SIZES))
    elif case == "albert":  # two layer groups over four exits: groups 0, 0, 1, 1
        tokenizer = hf.AlbertTokenizer(vocab=_unigram_vocab(["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]))
        model = hf.AlbertModel(hf.AlbertConfig(vocab_size=len(tokenizer), embedding_size=16, num_hidden_groups=2,
                                               **TINY_SIZES, **_special_ids(tokenizer)))
    elif case == "distilbert":  # DistilBERT's published tokenizer is a BertTokenizer
        tokenizer = bert_tokenizer
        model = hf.DistilBertModel(hf.DistilBertConfig(vocab_size=tokenizer.vocab_size, dim=32, n_layers=4, n_heads=4,
                                                       hidden_dim=64, max_position_embeddings=128))
    elif case in ("deberta-v3", "deberta-v2-conv"):
        tokenizer = hf.DebertaV2Tokenizer(vocab=_unigram_vocab(["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]))
        v3 = case == "deberta-v3"  # v3: no token types, no convolution; v2-xlarge style: both
        config = hf.DebertaV2Config(
            vocab_size=len(tokenizer), relative_attention=True, position_buckets=8, pos_att_type=["p2c", "c2p"],
            norm_rel_ebd="layer_norm", share_att_key=True, position_biased_input=False,
            type_vocab_size=0 if v3 else 2, conv_kernel_size=0 if v3 else 3, **TINY_SIZES, **_special_ids(tokenizer),
        )
        model = hf.DebertaV2Model(config)
    elif case == "modernbert":  # a 6-token window: the sliding-window layers really are local here
        tokenizer = _byte_level_bpe()
        config = hf.ModernBertConfig(vocab_size=len(tokenizer), local_attention=6, global_attn_every_n_layers=2,
                                     classifier_pooling="mean", bos_token_id=tokenizer.cls_token_id,
                                     eos_token_id=tokenizer.sep_token_id, **TINY_SIZES, **_special_ids(tokenizer))
        model = hf.ModernBertModel(config)
    else:
        raise ValueError(case)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# Each case and the model type it builds: every registered family, DeBERTa in its v3 and v2-xlarge layouts.
FAMILY_CASES = {"bert": "bert", "albert": "albert", "distilbert": "distilbert", "deberta-v3": "deberta-v2",
                "deberta-v2-conv": "deberta-v2", "modernbert": "modernbert"}


# ---- the CLI, stage by stage ----
def invoke(*args):
    from typer.testing import CliRunner

    from de3pipe.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def stage_overrides(model_dir, glue_dir) -> list[str]:
    """--set pairs for fast CLI runs on a tiny model and the toy SST-2 folder."""
    pairs = {
        "model.name_or_path": model_dir,
        "data.glue_dir": glue_dir,
        "data.validation_size": 20,
        "finetune.epochs": 1,
        "finetune.batch_size": 8,
        "finetune.learning_rate": 1e-3,
        "prototypes.epochs": 1,
        "calibration.n_thresholds": 20,
        "evaluation.wallclock_repeats": 1,
    }
    return [arg for key, value in pairs.items() for arg in ("--set", f"{key}={value}")]


def run_every_stage(out, sets) -> None:
    """prepare, finetune, prototypes, signals, calibrate and evaluate into ``out``, as the workflow chains them."""
    steps = [
        ["prepare", "--task", "SST-2", "--out", out / "data", *sets],
        ["finetune", "-q", "--data", out / "data", "--out", out / "ft", *sets],
        ["prototypes", "-q", "--data", out / "data", "--model", out / "ft", "--out", out / "proto", *sets],
        ["signals", "-q", "--data", out / "data", "--model", out / "proto", "--out", out / "signals", *sets],
        ["calibrate", "--signals", out / "signals", "--out", out / "calib", *sets],
        ["evaluate", "--signals", out / "signals", "--thresholds", out / "calib" / "thresholds.json",
         "--out", out / "eval", "--model", out / "proto", "--data", out / "data", *sets],
    ]
    for step in steps:
        result = invoke(*step)
        assert result.exit_code == 0, (step[0], result.output)


def paired_seed_study(rng, n_seeds: int, seed_sd: float, n: int = 400):
    """One simulated study of a paired accuracy difference: every seed's two models on one shared
    test set of ``n`` examples, each seed with its own effect (sd ``seed_sd``) on the difference;
    the true difference, over seeds and examples, is 0.02."""
    labels = rng.integers(0, 2, n)
    difficulty = rng.random(n)  # shared by every seed and both models: the test set's own luck
    preds = []
    for effect in rng.normal(0, seed_sd, n_seeds):
        own = rng.random(n)
        right_a = np.where(rng.random(n) < 0.6, difficulty, own) < 0.80 + effect / 2
        right_b = np.where(rng.random(n) < 0.6, difficulty, rng.random(n)) < 0.78 - effect / 2
        preds.append(np.stack([np.where(right_a, labels, 1 - labels), np.where(right_b, labels, 1 - labels)]))
    return labels, preds
