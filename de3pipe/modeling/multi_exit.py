"""Multi-exit encoder with per-layer internal classifiers and prototypical networks (method.md).

A checkpoint is a self-describing folder, written and read only here:

- ``config.json``: the backbone's Hugging Face config (so ``AutoConfig`` reads it),
- ``de3pipe.json``: :class:`MultiExitConfig` (task, labels, pooling, distance, stage, ...),
- ``model.safetensors``: every weight and the prototype buffers (never pickle),
- the tokenizer files.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn
from transformers import AutoModel, PreTrainedTokenizerBase

from de3pipe.modeling.batching import resolve_device
from de3pipe.errors import De3Error
from de3pipe.modeling import backbone as bb
from de3pipe.modeling.families import family_of

CONFIG_NAME = "de3pipe.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1
Stage = Literal["finetuned", "prototyped"]


@dataclass
class MultiExitConfig:
    task: str
    label_names: list[str]
    num_layers: int
    hidden_size: int
    pooling: str  # "cls" or "mean"
    distance: str  # "euclidean", "sq_euclidean" or "cosine"
    prototype_dim: int
    classifier_dropout: float
    max_length: int
    base_model: str
    stage: Stage = "finetuned"
    history: list[dict] = field(default_factory=list)  # what each training stage did
    # sentence pairs or single texts: a served dataset of your own is in no task table (None: an
    # older checkpoint, whose GLUE task says)
    pair: bool | None = None
    format_version: int = FORMAT_VERSION

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


class MultiExitModel(nn.Module):
    """Backbone layers + an internal classifier per layer + a prototypical network per layer < M."""

    def __init__(self, config: MultiExitConfig, backbone: nn.Module):
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.family = family_of(backbone)
        self.family.drop_pooler(backbone)
        hidden, n_layers, n_labels = config.hidden_size, config.num_layers, config.num_labels
        self.poolers = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(n_layers))
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifiers = nn.ModuleList(nn.Linear(hidden, n_labels) for _ in range(n_layers))
        self.prototype_nets = nn.ModuleList(nn.Linear(hidden, config.prototype_dim) for _ in range(n_layers - 1))
        self.register_buffer("prototypes", torch.zeros(n_layers - 1, n_labels, config.prototype_dim))
        self.register_buffer("prototype_seen", torch.zeros(n_layers - 1, n_labels, dtype=torch.bool))

    # ---- building blocks shared by training, the signal pass and the early-exit engine ----
    @property
    def num_layers(self) -> int:
        return self.config.num_layers

    @property
    def device(self) -> torch.device:
        return self.prototypes.device

    def exit_head(self, layer: int, hidden: torch.Tensor, attention_mask: torch.Tensor):
        """Layer ``layer`` (0-based) exit: (logits, u) with u the IC's pooled representation."""
        pooled = bb.pool(self.family.exit_hidden(self.backbone, hidden), attention_mask, self.config.pooling)
        u = torch.tanh(self.poolers[layer](pooled))
        return self.classifiers[layer](self.dropout(u)), u

    def embed(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        return self.family.embed(self.backbone, input_ids, attention_mask, token_type_ids)

    def layer_context(self, hidden: torch.Tensor, attention_mask: torch.Tensor):
        """What every layer needs besides the hidden states, for this batch's rows and width."""
        return self.family.layer_context(self.backbone, hidden, attention_mask)

    def run_layer(self, layer: int, hidden: torch.Tensor, context) -> torch.Tensor:
        return self.family.run_layer(self.backbone, layer, hidden, context)

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        """All exits: logits (M, B, K) and pooled representations (M, B, H)."""
        hidden = self.embed(input_ids, attention_mask, token_type_ids)
        context = self.layer_context(hidden, attention_mask)
        all_logits, all_u = [], []
        for layer in range(self.num_layers):
            hidden = self.run_layer(layer, hidden, context)
            logits, u = self.exit_head(layer, hidden, attention_mask)
            all_logits.append(logits)
            all_u.append(u)
        return torch.stack(all_logits), torch.stack(all_u)

    # ---- prototypes ----
    def embed_prototype_space(self, layer: int, u: torch.Tensor) -> torch.Tensor:
        return self.prototype_nets[layer](u)

    def distances(self, layer: int, z: torch.Tensor) -> torch.Tensor:
        """Distance of each row of ``z`` (B, d) to layer ``layer``'s prototypes: (B, K); inf for unseen classes."""
        dist = prototype_distance(z, self.prototypes[layer], self.config.distance)
        return dist.masked_fill(~self.prototype_seen[layer], float("inf"))

    @torch.no_grad()
    def update_prototypes(self, z: torch.Tensor, labels: torch.Tensor, gamma: float) -> None:
        """EMA of the batch class means: z (M-1, B, d). Absent classes keep their prototype;
        a class's first batch initialises it."""
        one_hot = nn.functional.one_hot(labels, self.config.num_labels).to(z.dtype)  # (B, K)
        counts = one_hot.sum(0)  # (K,)
        present = counts > 0
        means = torch.einsum("bk,lbd->lkd", one_hot, z.detach()) / counts.clamp(min=1)[None, :, None]
        ema = (1 - gamma) * self.prototypes + gamma * means
        update = torch.where(self.prototype_seen[..., None], ema, means)
        self.prototypes.copy_(torch.where(present[None, :, None], update, self.prototypes))
        self.prototype_seen |= present[None, :]

    # ---- persistence ----
    def save_pretrained(self, folder: str | Path, tokenizer: PreTrainedTokenizerBase) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.backbone.config.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        (folder / CONFIG_NAME).write_text(json.dumps(dataclasses.asdict(self.config), indent=2) + "\n")
        state = {name: tensor.detach().contiguous().cpu() for name, tensor in self.state_dict().items()}
        # One metadata key only: safetensors writes the metadata map in a random order, so two
        # keys would give different bytes (and DVC hashes) for identical weights.
        payload = save(state, metadata={"format": "pt"})
        # Written by Python (not safetensors' own writer) so a full disk is an OSError with errno
        # ENOSPC that callers can report; fsync before the folder is renamed into place.
        with open(folder / WEIGHTS_NAME, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())

    @classmethod
    def from_base(cls, name_or_path: str, task, model_cfg) -> tuple[MultiExitModel, PreTrainedTokenizerBase]:
        """A fresh multi-exit model over a pretrained encoder (stage-1 input)."""
        path = bb.resolve_model_path(name_or_path)
        backbone = bb.load_pretrained(path, model_cfg.trust_remote_code)
        tokenizer = bb.load_tokenizer(path, model_cfg.trust_remote_code)
        hf, family = backbone.config, family_of(backbone)
        pooling = model_cfg.pooling
        if pooling == "auto":
            pooling = bb.detect_pooling(path, family.default_pooling(hf))
        dropout = model_cfg.classifier_dropout
        config = MultiExitConfig(
            task=task.name,
            label_names=list(task.label_names),
            pair=task.is_pair,
            num_layers=family.num_exits(hf),
            hidden_size=hf.hidden_size,
            pooling=pooling,
            distance=model_cfg.distance,
            prototype_dim=model_cfg.prototype_dim or hf.hidden_size,
            classifier_dropout=family.classifier_dropout(hf) if dropout is None else dropout,
            max_length=min(model_cfg.max_length, getattr(hf, "max_position_embeddings", model_cfg.max_length)),
            base_model=name_or_path,
        )
        pretrained_pooler = family.pretrained_pooler(backbone)
        model = cls(config, backbone)
        if pretrained_pooler is not None:  # method.md: each exit's pooler starts from the pretrained one
            for pooler in model.poolers:
                pooler.load_state_dict(pretrained_pooler.state_dict())
        return model, tokenizer


DISTANCE_FLOOR = 1e-12  # squared distance; distances below 1e-6 read as 1e-6


def prototype_distance(z: torch.Tensor, prototypes: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "cosine":
        return 1 - nn.functional.cosine_similarity(z[:, None, :], prototypes[None], dim=-1)
    squared = ((z[:, None, :] - prototypes[None]) ** 2).sum(-1)
    # sqrt has an infinite gradient at 0, reached when a prototype equals a sample (a class first
    # seen through a single example): below a tiny floor the clamp's gradient is 0, so it stays finite.
    return squared if kind == "sq_euclidean" else squared.clamp(min=DISTANCE_FLOOR).sqrt()


def load_checkpoint(
    folder: str | Path, require_stage: Stage | None = None, trust_remote_code: bool = False
) -> tuple[MultiExitModel, PreTrainedTokenizerBase]:
    """Load a folder written by :meth:`MultiExitModel.save_pretrained`, checking it is complete."""
    folder = Path(folder)
    if not folder.is_dir():
        raise De3Error(f"checkpoint folder {folder} does not exist; run the stage that writes it first")
    meta_file = folder / CONFIG_NAME
    if not meta_file.is_file():
        raise De3Error(f"{folder} is not a de3pipe checkpoint (no {CONFIG_NAME}); give a folder written by de3pipe")
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        config = MultiExitConfig(**meta)
    except (json.JSONDecodeError, TypeError) as exc:
        raise De3Error(f"{meta_file} is corrupt ({exc}); re-run the stage that wrote {folder}") from None
    if require_stage == "prototyped" and config.stage != "prototyped":
        raise De3Error(
            f"{folder} is a stage-1 (finetuned) checkpoint without trained prototypes; "
            "run `de3pipe prototypes` on it and give its output folder"
        )
    if require_stage == "finetuned" and config.stage != "finetuned":
        raise De3Error(
            f"{folder} is a stage-2 (prototyped) checkpoint; prototype training starts from the stage-1 "
            "(finetuned) folder written by `de3pipe finetune`"
        )
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise De3Error(f"{folder} has no {WEIGHTS_NAME}: the checkpoint is incomplete; re-run the stage that wrote it")
    try:
        state = load_file(weights)
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise De3Error(
            f"{weights} is corrupt or truncated ({exc}); re-run the stage that wrote {folder}"
        ) from None
    hf_config = bb.load_config(str(folder), trust_remote_code)
    backbone = AutoModel.from_config(hf_config, trust_remote_code=trust_remote_code)
    model = MultiExitModel(config, backbone)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a tensor of the wrong shape
        reason = str(exc).splitlines()[-1].strip()[:300]
        raise De3Error(f"{weights} does not fit its configuration ({reason}); re-run the stage that wrote {folder}") from None
    if missing or unexpected:
        raise De3Error(
            f"{weights} does not match its configuration (missing {sorted(missing)[:3]}, "
            f"unexpected {sorted(unexpected)[:3]}); re-run the stage that wrote {folder}"
        )
    tokenizer = bb.load_tokenizer(folder, trust_remote_code)
    vocab = hf_config.vocab_size
    if len(tokenizer) > vocab:
        raise De3Error(
            f"the tokenizer in {folder} has {len(tokenizer)} tokens but the model's embeddings hold {vocab}: "
            "they come from different models; save the model with its own tokenizer"
        )
    model.to(resolve_device()).eval()
    return model, tokenizer
