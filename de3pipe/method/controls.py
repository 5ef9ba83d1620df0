"""What the study compares de3 against on the same frozen features (opt-in: ``prototypes.controls``).

Stage 2 gives every layer m < M a second trained head (the prototypical network). Two
comparisons isolate what that head contributes:

- **control heads**: a plain softmax head per layer with the prototypical network's capacity
  (its H x d map, then d x K output weights where the network holds K prototypes of size d),
  trained with cross-entropy on the same cached features, batches and optimiser. The
  ``control_entropy``/``control_maxprob`` strategies exit on its entropy or top probability and
  predict with it; de3's gain counts only where it beats these too.
- **no-DAR prototypes**: the class means of the untrained identity map (z = u) over the train
  split, the ``de3_nodar`` ablation: the distance signal without the trained map and DAR.

Both live beside the checkpoint's weights, in ``controls.safetensors``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from de3pipe.errors import De3Error
from de3pipe.modeling.multi_exit import prototype_distance

WEIGHTS_NAME = "controls.safetensors"
CONFIG_NAME = "controls.json"


class StudyControls(nn.Module):
    """Control softmax heads and identity-map class means for layers 1..M-1."""

    def __init__(self, num_exits: int, hidden_size: int, dim: int, num_labels: int):
        super().__init__()
        self.shape = {"num_exits": num_exits, "hidden_size": hidden_size, "dim": dim, "num_labels": num_labels}
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden_size, dim), nn.Tanh(), nn.Linear(dim, num_labels)) for _ in range(num_exits)
        )
        self.register_buffer("class_means", torch.zeros(num_exits, num_labels, hidden_size))
        self.register_buffer("class_seen", torch.zeros(num_exits, num_labels, dtype=torch.bool))

    @torch.no_grad()
    def set_class_means(self, pooled: torch.Tensor, labels: torch.Tensor) -> None:
        """Class means of ``pooled`` (N, M-1, H) over the whole split: the no-DAR prototypes."""
        for k in range(self.shape["num_labels"]):
            rows = labels == k
            if rows.any():
                self.class_means[:, k] = pooled[rows].mean(0)
                self.class_seen[:, k] = True

    def distances(self, layer: int, u: torch.Tensor, kind: str) -> torch.Tensor:
        dist = prototype_distance(u, self.class_means[layer], kind)
        return dist.masked_fill(~self.class_seen[layer], float("inf"))

    def save(self, folder: Path, trained: dict) -> None:
        state = {name: tensor.detach().contiguous().cpu() for name, tensor in self.state_dict().items()}
        with open(folder / WEIGHTS_NAME, "wb") as handle:
            handle.write(save(state, metadata={"format": "pt"}))  # one key: byte-reproducible
            handle.flush()
            os.fsync(handle.fileno())
        (folder / CONFIG_NAME).write_text(json.dumps({**self.shape, "trained": trained}, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> StudyControls | None:
        """The folder's controls, or None when it was trained without them."""
        weights, meta = folder / WEIGHTS_NAME, folder / CONFIG_NAME
        if not weights.is_file() and not meta.is_file():
            return None
        try:
            shape = json.loads(meta.read_text(encoding="utf-8"))
            controls = cls(shape["num_exits"], shape["hidden_size"], shape["dim"], shape["num_labels"])
            controls.load_state_dict(load_file(weights))
        except (OSError, json.JSONDecodeError, KeyError, SafetensorError, RuntimeError) as exc:
            raise De3Error(
                f"the study controls in {folder} are incomplete or corrupt ({exc}); re-run `de3pipe prototypes`"
            ) from None
        return controls.eval()


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.inference_mode()
def control_arrays(controls: StudyControls, pooled: np.ndarray, ic_log_probs: np.ndarray, kind: str, eps: float) -> dict:
    """Per-sample study signals from the pooled features (N, M, H) of one split:
    ``control_log_probs`` (N, M-1, K) and the no-DAR ``nodar_r1/r2/dr`` (N, M-1)."""
    from de3pipe.method.signals import layer_signals

    u = torch.from_numpy(pooled).to(controls.class_means.device)
    log_probs, r1, r2, dr = [], [], [], []
    for m in range(controls.shape["num_exits"]):
        log_probs.append(torch.log_softmax(controls.heads[m](u[:, m]).float(), -1).cpu().numpy())
        # The IC's own prediction decides which class mean is "its" prototype, as for de3.
        layer = layer_signals(torch.from_numpy(ic_log_probs[:, m]), controls.distances(m, u[:, m], kind), eps)
        r1.append(layer.r1)
        r2.append(layer.r2)
        dr.append(layer.dr)
    stack = lambda values: np.stack(values, 1).astype(np.float32)  # noqa: E731
    return {"control_log_probs": stack(log_probs), "nodar_r1": stack(r1), "nodar_r2": stack(r2), "nodar_dr": stack(dr)}
