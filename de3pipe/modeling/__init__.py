"""The multi-exit model: a Hugging Face encoder with an exit head on every layer."""

from de3pipe.modeling.multi_exit import MultiExitConfig, MultiExitModel, load_checkpoint

__all__ = ["MultiExitConfig", "MultiExitModel", "load_checkpoint"]
