"""Exit signals (method.md): computed once per layer in torch, stored and replayed in numpy.

``layer_signals`` is the one implementation used by the signal pass and by the early-exit
engine, so replayed decisions and live decisions see the same numbers.
"""

from __future__ import annotations

import dataclasses
import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from de3pipe.errors import De3Error
from de3pipe.infra.io import write_npz

if TYPE_CHECKING:
    import torch


@dataclass
class LayerSignals:
    """Signals of a batch at one layer (numpy, one row per sample)."""

    log_probs: np.ndarray  # (B, K)
    pred: np.ndarray  # (B,)
    entropy: np.ndarray  # (B,) normalised to [0, 1]
    r1: np.ndarray | None = None  # distance to the predicted class's prototype
    r2: np.ndarray | None = None  # distance to the nearest other prototype
    dr: np.ndarray | None = None  # distance ratio in [0, 1]
    pooled: np.ndarray | None = None  # (B, H) the IC's pooled representation u (signal pass, when asked)

    @property
    def maxprob(self) -> np.ndarray:
        return np.exp(self.log_probs.max(-1))


def layer_signals(logits: torch.Tensor, distances: torch.Tensor | None, eps: float) -> LayerSignals:
    import torch

    # log_softmax, not softmax-then-log: no overflow, no log(0).
    log_probs = torch.log_softmax(logits.float(), dim=-1).cpu()
    pred = log_probs.argmax(-1)
    n_classes = log_probs.shape[-1]
    entropy = -(log_probs.exp() * log_probs).sum(-1) / math.log(n_classes)
    out = LayerSignals(log_probs.numpy(), pred.numpy(), entropy.clamp(0, 1).numpy())
    if distances is not None:
        distances = distances.float().cpu()
        r1 = distances.gather(1, pred[:, None]).squeeze(1)
        r2 = distances.scatter(1, pred[:, None], float("inf")).min(-1).values
        ratio = 0.5 * (1 + (r1 - r2) / torch.maximum(r1, r2).clamp(min=eps))
        # A class never seen in training has no prototype (distance inf): treat it as far away.
        dr = torch.where(torch.isinf(r1), 1.0, torch.where(torch.isinf(r2), 0.0, ratio))
        out.r1, out.r2, out.dr = r1.numpy(), r2.numpy(), dr.numpy()
    return out


def _shape_problem(arrays: dict[str, np.ndarray], meta) -> str | None:
    """What is wrong with the shapes of a loaded signals file (None when they fit together)."""
    if not isinstance(meta, dict) or not isinstance(meta.get("task"), str):
        return "its meta names no task"
    log_probs = arrays["log_probs"]
    if log_probs.ndim != 3 or log_probs.shape[1] < 2:
        return f"log_probs has shape {log_probs.shape}, not (samples, layers >= 2, classes)"
    n, m, k = log_probs.shape
    expected = {"pred": (n, m), "entropy": (n, m), "r1": (n, m - 1), "r2": (n, m - 1), "dr": (n, m - 1),
                "labels": (n,), "idx": (n,), "control_log_probs": (n, m - 1, k), "nodar_r1": (n, m - 1),
                "nodar_r2": (n, m - 1), "nodar_dr": (n, m - 1)}
    for name, shape in expected.items():
        if name in arrays and arrays[name].shape != shape:
            return f"{name} has shape {arrays[name].shape}, expected {shape}"
    return None


def edr(entropy: np.ndarray, dr: np.ndarray, lam: float, eps: float = 1e-8) -> np.ndarray:
    """Hybrid indicator, a weighted harmonic mean: (lam+1) / (lam/DR + 1/E); lam=0 gives E."""
    return (lam + 1) / (lam / np.maximum(dr, eps) + 1 / np.maximum(entropy, eps))


@dataclass
class Signals:
    """Every sample's signals at every layer for one split: what strategies are replayed on."""

    log_probs: np.ndarray  # (N, M, K) float32
    pred: np.ndarray  # (N, M) int64
    entropy: np.ndarray  # (N, M)
    r1: np.ndarray  # (N, M-1)
    r2: np.ndarray  # (N, M-1)
    dr: np.ndarray  # (N, M-1)
    labels: np.ndarray  # (N,) -1 where unlabeled
    idx: np.ndarray  # (N,) the split's example ids
    meta: dict = field(default_factory=dict)
    # The study's controls (de3pipe/method/controls.py), present when the checkpoint has them:
    control_log_probs: np.ndarray | None = None  # (N, M-1, K) the control softmax heads
    nodar_r1: np.ndarray | None = None  # (N, M-1) r1, r2, DR against the no-DAR class means
    nodar_r2: np.ndarray | None = None
    nodar_dr: np.ndarray | None = None
    source: Path | None = field(default=None, compare=False)  # the file it was loaded from, if any
    _views: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # view() results

    ARRAYS = ("log_probs", "pred", "entropy", "r1", "r2", "dr", "labels", "idx")
    CONTROL_ARRAYS = ("control_log_probs", "nodar_r1", "nodar_r2", "nodar_dr")

    @property
    def num_samples(self) -> int:
        return self.pred.shape[0]

    @property
    def num_layers(self) -> int:
        return self.pred.shape[1]

    @property
    def has_labels(self) -> bool:
        return bool((self.labels >= 0).all())

    @property
    def task(self):
        """The task these signals are of, with the class names the signal pass recorded (a dataset
        of your own may have found them in its train file)."""
        from de3pipe.data.tasks import get_task

        return get_task(self.meta["task"]).with_label_names(self.meta.get("label_names"))

    def layer(self, layer: int) -> LayerSignals:
        """Signals at 1-based ``layer`` for all samples."""
        m = layer - 1
        last = layer == self.num_layers
        return LayerSignals(
            self.log_probs[:, m],
            self.pred[:, m],
            self.entropy[:, m],
            None if last else self.r1[:, m],
            None if last else self.r2[:, m],
            None if last else self.dr[:, m],
        )

    @property
    def has_controls(self) -> bool:
        return self.control_log_probs is not None

    def view(self, kind: str | None) -> Signals:
        """The signals a strategy variant reads (a registered strategy's ``variants``): ``control`` swaps the
        internal classifiers of layers < M for the control heads, ``nodar`` swaps the distances
        for those to the no-DAR class means; None is the signals themselves."""
        if kind is None:
            return self
        if kind not in self._views:  # every frozen point of a variant replays on the same view
            self._views[kind] = self._make_view(kind)
        return self._views[kind]

    def _make_view(self, kind: str) -> Signals:
        if not self.has_controls:
            raise De3Error(
                f"the {kind!r} strategies need the study controls: set prototypes.controls: true "
                "(as config/study.yaml does) and re-run `de3pipe prototypes` and `de3pipe signals`"
            )
        out = dataclasses.replace(self)
        inner = slice(0, self.num_layers - 1)
        if kind == "control":
            import torch

            n, n_classes = self.num_samples, self.log_probs.shape[-1]
            heads = layer_signals(torch.from_numpy(self.control_log_probs.reshape(-1, n_classes)), None, 0.0)
            out.log_probs, out.pred, out.entropy = self.log_probs.copy(), self.pred.copy(), self.entropy.copy()
            out.log_probs[:, inner] = self.control_log_probs
            out.pred[:, inner] = heads.pred.reshape(n, -1)
            out.entropy[:, inner] = heads.entropy.reshape(n, -1)
        elif kind == "nodar":
            out.r1, out.r2, out.dr = self.nodar_r1, self.nodar_r2, self.nodar_dr
        else:
            raise De3Error(f"unknown signals view {kind!r}; use 'control' or 'nodar'")
        return out

    def save(self, path: str | Path) -> None:
        arrays = {name: getattr(self, name) for name in self.ARRAYS}
        arrays |= {name: getattr(self, name) for name in self.CONTROL_ARRAYS if getattr(self, name) is not None}
        write_npz(path, meta=np.array(json.dumps(self.meta)), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> Signals:
        path = Path(path)
        if not path.is_file():
            raise De3Error(f"signals file {path} does not exist; run `de3pipe signals` first")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in cls.ARRAYS}
                arrays |= {name: data[name] for name in cls.CONTROL_ARRAYS if name in data.files}
                meta = json.loads(str(data["meta"]))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise De3Error(f"signals file {path} is corrupt or truncated ({exc}); re-run `de3pipe signals`") from None
        problem = _shape_problem(arrays, meta)
        if problem:
            raise De3Error(f"signals file {path} is malformed: {problem}; re-run `de3pipe signals`")
        return cls(**arrays, meta=meta, source=path)

    def subset(self, rows: np.ndarray) -> Signals:
        """The signals of the examples ``rows`` (indices or a mask), in that order."""
        arrays = {name: getattr(self, name)[rows] for name in self.ARRAYS}
        arrays |= {name: getattr(self, name)[rows] for name in self.CONTROL_ARRAYS if getattr(self, name) is not None}
        return Signals(**arrays, meta=dict(self.meta))

    @classmethod
    def pool(cls, parts: list[Signals]) -> Signals:
        """The examples of several splits of one model as one set (labels stay -1 where a split
        has none); the meta of the first, its split naming them all (``validation+submit``)."""
        first = parts[0]
        if any(p.meta.get("task") != first.meta.get("task") or p.num_layers != first.num_layers for p in parts):
            raise De3Error("only the signals of one task and one model can be pooled")
        arrays = {name: np.concatenate([getattr(p, name) for p in parts]) for name in cls.ARRAYS}
        if all(p.has_controls for p in parts):
            arrays |= {name: np.concatenate([getattr(p, name) for p in parts]) for name in cls.CONTROL_ARRAYS}
        meta = dict(first.meta) | {"split": "+".join(str(p.meta.get("split")) for p in parts)}
        return cls(**arrays, meta=meta)

    @classmethod
    def concatenate(cls, layers: list[list[LayerSignals]], labels: np.ndarray, idx: np.ndarray, meta: dict) -> Signals:
        """Build from per-batch lists of per-layer signals (``layers[b][m]``)."""

        def stack(attr: str, upto: int) -> np.ndarray:
            return np.concatenate([np.stack([getattr(s, attr) for s in batch[:upto]], 1) for batch in layers])

        n_layers = len(layers[0])
        return cls(
            log_probs=stack("log_probs", n_layers).astype(np.float32),
            pred=stack("pred", n_layers).astype(np.int64),
            entropy=stack("entropy", n_layers).astype(np.float32),
            r1=stack("r1", n_layers - 1).astype(np.float32),
            r2=stack("r2", n_layers - 1).astype(np.float32),
            dr=stack("dr", n_layers - 1).astype(np.float32),
            labels=labels.astype(np.int64),
            idx=idx.astype(np.int64),
            meta=meta,
        )
