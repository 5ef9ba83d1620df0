"""The prototype space made visible: per layer, a 2-D PCA of validation samples' embeddings
z = W u + b with the class prototypes projected alongside (opt-in: ``signals.prototype_space``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA

from de3pipe.infra.io import write_npz
from de3pipe.modeling import MultiExitModel


@torch.inference_mode()
def project_prototype_space(model: MultiExitModel, pooled: np.ndarray, labels: np.ndarray, pred: np.ndarray) -> dict:
    """Arrays of the figure: ``coords`` (M-1, N, 2), ``prototypes`` (M-1, K, 2; NaN for a class
    without prototype), ``explained`` (M-1,) variance share of the two axes, ``labels`` (N,) and
    the internal classifiers' ``pred`` (N, M-1)."""
    n_exits = model.num_layers - 1
    coords, prototypes, explained = [], [], []
    for m in range(n_exits):
        z = model.embed_prototype_space(m, torch.from_numpy(pooled[:, m]).to(model.device)).float().cpu().numpy()
        pca = PCA(n_components=2, svd_solver="full").fit(z.astype(np.float64))
        coords.append(pca.transform(z))
        centres = model.prototypes[m].float().cpu().numpy()
        projected = pca.transform(centres.astype(np.float64))
        projected[~model.prototype_seen[m].cpu().numpy()] = np.nan
        prototypes.append(projected)
        explained.append(float(pca.explained_variance_ratio_.sum()))
    return {
        "coords": np.stack(coords).astype(np.float32),
        "prototypes": np.stack(prototypes).astype(np.float32),
        "explained": np.array(explained, dtype=np.float32),
        "labels": labels.astype(np.int64),
        "pred": pred[:, :n_exits].astype(np.int64),
    }


def save_projection(path: Path, arrays: dict, meta: dict) -> None:
    write_npz(path, meta=np.array(json.dumps(meta)), **arrays)
