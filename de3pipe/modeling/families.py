"""Backbone families: how each kind of Hugging Face encoder runs one layer at a time.

Early exiting needs an encoder as ``embed → layer 1 → … → layer M`` with a readable hidden state
after every layer. A :class:`Family` adapter says how for one family of ``model_type`` values:

- ``embed``: token ids to the first layer's input (projections included);
- ``layer_context``: everything a layer needs besides the hidden states (attention masks,
  relative positions, rotary tables), built from the running batch. The early-exit engine
  rebuilds it whenever rows leave or padding columns are trimmed, so anything that depends on
  the batch's rows or width belongs here;
- ``run_layer``: exit ``index`` (0-based); ALBERT applies its shared layer again;
- ``exit_hidden``: what an exit reads (pre-LN encoders read through their final norm);
- the pooling and classifier dropout a fresh model gets, and the pretrained pooler, if any,
  that each exit's pooler starts from (method.md).

Adding a family is one adapter class here with ``@register_family``; loading, the error for an
unsupported model and the docs' family table all derive from :data:`FAMILIES`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn
from transformers.masking_utils import (
    create_bidirectional_mask,
    create_bidirectional_sliding_window_mask,
)

FAMILIES: dict[str, Family] = {}


def register_family(cls: type[Family]) -> type[Family]:
    """Register an adapter class (timm-style): its ``model_types`` become loadable."""
    family = cls()
    taken = {t for other in FAMILIES.values() for t in other.model_types} & set(family.model_types)
    if family.name in FAMILIES or taken:
        raise ValueError(f"family {family.name!r} or model types {sorted(taken)} are already registered")
    FAMILIES[family.name] = family
    return cls


def family_for_model_type(model_type: str) -> Family | None:
    return next((f for f in FAMILIES.values() if model_type in f.model_types), None)


def family_of(backbone: nn.Module) -> Family:
    family = family_for_model_type(backbone.config.model_type)
    if family is None:
        raise ValueError(f"no registered family runs model type {backbone.config.model_type!r}")
    return family


def supported_families_text() -> str:
    """One line for error messages: every family with its model types."""
    return "; ".join(f"{f.name} ({', '.join(f.model_types)})" for f in FAMILIES.values())


def family_table() -> str:
    """The docs' table of supported families (config/README.md holds it; a test keeps it in step)."""
    rows = ["| family | model types | hub names to try online | the exits | default pooling |", "|---|---|---|---|---|"]
    for family in FAMILIES.values():
        types = ", ".join(f"`{t}`" for t in family.model_types)
        hubs = ", ".join(f"`{name}`" for name in family.hub_names)
        rows.append(f"| {family.name} | {types} | {hubs} | {family.layout} | {family.pooling_note} |")
    return "\n".join(rows) + "\n"


class Family:
    name: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]]
    hub_names: ClassVar[tuple[str, ...]]  # what users try online (docs)
    layout: ClassVar[str]  # what each exit follows, for the docs
    pooling_note: ClassVar[str] = "`cls`"  # the default pooling, as the docs state it

    # ---- building a fresh multi-exit model ----
    def num_exits(self, config) -> int:
        return config.num_hidden_layers

    def default_pooling(self, config) -> str:
        return "cls"

    def classifier_dropout(self, config) -> float:
        return config.hidden_dropout_prob

    def pretrained_pooler(self, backbone: nn.Module) -> nn.Linear | None:
        """The dense layer of the backbone's pretrained [CLS] pooler, if it has one."""
        return getattr(getattr(backbone, "pooler", None), "dense", None)

    def drop_pooler(self, backbone: nn.Module) -> None:
        """The backbone's own pooler is replaced by one pooler per exit (method.md decision)."""
        if getattr(backbone, "pooler", None) is not None:
            backbone.pooler = None

    # ---- running it layer by layer ----
    def embed(self, backbone, input_ids, attention_mask, token_type_ids) -> torch.Tensor:
        raise NotImplementedError

    def layer_context(self, backbone, hidden: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        """By default the attention mask in the form the attention implementation expects."""
        return create_bidirectional_mask(config=backbone.config, inputs_embeds=hidden, attention_mask=attention_mask)

    def run_layer(self, backbone, index: int, hidden: torch.Tensor, context) -> torch.Tensor:
        raise NotImplementedError

    def exit_hidden(self, backbone, hidden: torch.Tensor) -> torch.Tensor:
        return hidden


@register_family
class BertFamily(Family):
    """BERT and the encoders that share its layout: ``embeddings`` and ``encoder.layer``."""

    name = "bert"
    model_types = ("bert", "roberta", "xlm-roberta", "camembert", "electra")
    hub_names = ("bert-base-uncased", "roberta-base", "xlm-roberta-base", "google/electra-base-discriminator")
    layout = "each of `encoder.layer`"

    def embed(self, backbone, input_ids, attention_mask, token_type_ids):
        hidden = backbone.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        project = getattr(backbone, "embeddings_project", None)  # ELECTRA with a small embedding size
        return project(hidden) if project is not None else hidden

    def run_layer(self, backbone, index, hidden, context):
        return backbone.encoder.layer[index](hidden, context)


@register_family
class AlbertFamily(Family):
    """One shared layer group applied ``num_hidden_layers`` times; every application is an exit."""

    name = "albert"
    model_types = ("albert",)
    hub_names = ("albert-base-v2",)
    layout = "each application of the shared layer (after the embedding projection)"

    def pretrained_pooler(self, backbone):
        return backbone.pooler  # ALBERT's pooler is the dense layer itself

    def embed(self, backbone, input_ids, attention_mask, token_type_ids):
        hidden = backbone.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        return backbone.encoder.embedding_hidden_mapping_in(hidden)  # embedding size -> hidden size

    def run_layer(self, backbone, index, hidden, context):
        config = backbone.config
        group = int(index / (config.num_hidden_layers / config.num_hidden_groups))  # as AlbertTransformer does
        return backbone.encoder.albert_layer_groups[group](hidden, context)


@register_family
class DistilBertFamily(Family):
    """``transformer.layer``, no token types and no pooler."""

    name = "distilbert"
    model_types = ("distilbert",)
    hub_names = ("distilbert-base-uncased",)
    layout = "each of `transformer.layer` (no token types)"

    def classifier_dropout(self, config):
        return config.seq_classif_dropout

    def embed(self, backbone, input_ids, attention_mask, token_type_ids):
        return backbone.embeddings(input_ids)

    def run_layer(self, backbone, index, hidden, context):
        return backbone.transformer.layer[index](hidden, context)


@register_family
class DebertaV2Family(Family):
    """DeBERTa-v2 and v3: disentangled attention over relative positions that every layer reads."""

    name = "deberta-v2"
    model_types = ("deberta-v2",)
    hub_names = ("microsoft/deberta-v3-base", "microsoft/deberta-v3-small", "microsoft/deberta-v2-xlarge")
    layout = "each layer, with the relative-position embeddings (and v2-xlarge's convolution after layer 1)"

    def embed(self, backbone, input_ids, attention_mask, token_type_ids):
        return backbone.embeddings(input_ids=input_ids, token_type_ids=token_type_ids, mask=attention_mask)

    def layer_context(self, backbone, hidden, attention_mask):
        encoder = backbone.encoder
        return {
            "attention_mask": encoder.get_attention_mask(attention_mask),
            "relative_pos": encoder.get_rel_pos(hidden),  # depends on the batch width
            "rel_embeddings": encoder.get_rel_embedding(),
            "input_mask": attention_mask,
        }

    def run_layer(self, backbone, index, hidden, context):
        encoder = backbone.encoder
        output, _ = encoder.layer[index](
            hidden, context["attention_mask"], relative_pos=context["relative_pos"],
            rel_embeddings=context["rel_embeddings"],
        )
        if index == 0 and encoder.conv is not None:  # v2-xlarge and larger: a convolution beside layer 1
            output = encoder.conv(hidden, output, context["input_mask"])
        return output


@register_family
class ModernBertFamily(Family):
    """Pre-LN layers with rotary positions and alternating global and sliding-window attention."""

    name = "modernbert"
    model_types = ("modernbert",)
    hub_names = ("answerdotai/ModernBERT-base", "answerdotai/ModernBERT-large")
    layout = "each layer with its rotary table and global or sliding-window mask, read through the final norm"
    pooling_note = "the checkpoint's `classifier_pooling`"

    def default_pooling(self, config):
        return config.classifier_pooling

    def classifier_dropout(self, config):
        return config.classifier_dropout

    def embed(self, backbone, input_ids, attention_mask, token_type_ids):
        return backbone.embeddings(input_ids=input_ids)

    def layer_context(self, backbone, hidden, attention_mask):
        config = backbone.config
        masks = {
            "full_attention": create_bidirectional_mask(config=config, inputs_embeds=hidden, attention_mask=attention_mask),
            "sliding_attention": create_bidirectional_sliding_window_mask(
                config=config, inputs_embeds=hidden, attention_mask=attention_mask
            ),
        }
        positions = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
        rotary = {kind: backbone.rotary_emb(hidden, positions, kind) for kind in set(config.layer_types)}
        return masks, rotary

    def run_layer(self, backbone, index, hidden, context):
        masks, rotary = context
        layer = backbone.layers[index]
        kind = layer.attention_type
        return layer(hidden, attention_mask=masks[kind], position_embeddings=rotary[kind])

    def exit_hidden(self, backbone, hidden):
        return backbone.final_norm(hidden)  # pre-LN: the residual stream is read through the final norm
