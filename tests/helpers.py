"""Builders shared by several test modules."""

from __future__ import annotations

import torch

from de3pipe.config import ModelConfig
from de3pipe.modeling import MultiExitModel
from de3pipe.tasks import get_task

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
