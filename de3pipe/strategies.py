"""Exit strategies behind one interface (method.md, "Strategies to compare").

A strategy is an online rule: at each layer m < M it sees the signals of the samples still
running and says which leave now. The same rule drives both the replay over stored signals
(:func:`replay`, for calibration and evaluation) and the batched engine (``engine.py``),
so the two cannot disagree. Layers are 1-based; a sample that never exits leaves at M.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np

from de3pipe.errors import De3Error
from de3pipe.signals import LayerSignals, Signals, edr

State = dict[str, np.ndarray]


@dataclass(frozen=True)
class Strategy(ABC):
    name: ClassVar[str]
    needs_distance: ClassVar[bool] = False
    needs_labels: ClassVar[bool] = False

    def init_state(self, n: int) -> State:
        return {}

    @abstractmethod
    def exits(self, layer: int, signals: LayerSignals, state: State, labels: np.ndarray | None) -> np.ndarray:
        """Boolean mask of the rows that exit at ``layer``; may update ``state`` (one entry per row)."""

    def knobs(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        knobs = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.knobs().items())
        return f"{self.name}({knobs})"


@dataclass(frozen=True)
class DE3(Strategy):
    """DE3-BERT: exit when EDR = (lam+1)/(lam/DR + 1/E) < tau."""

    tau: float
    lam: float
    eps: float = 1e-8
    name: ClassVar[str] = "de3"
    needs_distance: ClassVar[bool] = True

    def exits(self, layer, signals, state, labels):
        return edr(signals.entropy, signals.dr, self.lam, self.eps) < self.tau


@dataclass(frozen=True)
class Entropy(Strategy):
    """DeeBERT: exit when the normalised entropy E < tau."""

    tau: float
    name: ClassVar[str] = "entropy"

    def exits(self, layer, signals, state, labels):
        return signals.entropy < self.tau


@dataclass(frozen=True)
class MaxProb(Strategy):
    """Exit when the largest class probability > tau."""

    tau: float
    name: ClassVar[str] = "maxprob"

    def exits(self, layer, signals, state, labels):
        return signals.maxprob > self.tau


@dataclass(frozen=True)
class Distance(Strategy):
    """Ablation: exit on the distance ratio alone, DR < tau."""

    tau: float
    name: ClassVar[str] = "distance"
    needs_distance: ClassVar[bool] = True

    def exits(self, layer, signals, state, labels):
        return signals.dr < self.tau


class _Counting(Strategy):
    """Exit once a per-sample streak reaches ``t`` layers."""

    t: int

    def init_state(self, n):
        return {"streak": np.zeros(n, dtype=np.int64), "prev": np.full(n, -1, dtype=np.int64)}

    @abstractmethod
    def extends_streak(self, signals: LayerSignals, state: State) -> np.ndarray: ...

    def exits(self, layer, signals, state, labels):
        extend = self.extends_streak(signals, state)
        state["streak"] = np.where(extend, state["streak"] + 1, 0)
        state["prev"] = signals.pred.astype(np.int64)
        return state["streak"] >= self.t


@dataclass(frozen=True)
class Patience(_Counting):
    """PABEE: exit when the prediction stayed the same for t consecutive layers (t+1 agreeing layers)."""

    t: int
    name: ClassVar[str] = "patience"

    def extends_streak(self, signals, state):
        return signals.pred == state["prev"]


@dataclass(frozen=True)
class PCEE(_Counting):
    """PCEE-BERT: exit when E < tau held for t consecutive layers."""

    tau: float
    t: int
    name: ClassVar[str] = "pcee"

    def extends_streak(self, signals, state):
        return signals.entropy < self.tau


@dataclass(frozen=True)
class Static(Strategy):
    """Always exit at layer k (a smaller model, for reference)."""

    k: int
    name: ClassVar[str] = "static"

    def exits(self, layer, signals, state, labels):
        return np.full(len(signals.pred), layer >= self.k)


@dataclass(frozen=True)
class Oracle(Strategy):
    """Analysis only: the first layer whose prediction is correct (needs labels)."""

    name: ClassVar[str] = "oracle"
    needs_labels: ClassVar[bool] = True

    def exits(self, layer, signals, state, labels):
        if labels is None:
            raise De3Error("the oracle strategy needs labels; it is for analysis on labeled splits only")
        return signals.pred == labels


STRATEGY_TYPES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (DE3, Entropy, MaxProb, Patience, PCEE, Distance, Static, Oracle)
}


# The study's variants: a strategy above replayed on another view of the signals (Signals.view):
# the same rule, fed by the control heads or by the no-DAR prototypes (de3pipe/controls.py).
VARIANTS: dict[str, tuple[str, str]] = {
    "de3_nodar": ("de3", "nodar"),
    "control_entropy": ("entropy", "control"),
    "control_maxprob": ("maxprob", "control"),
}


def base_and_view(name: str) -> tuple[str, str | None]:
    """The rule a strategy name runs and the signals view it reads (None: the signals as stored)."""
    return VARIANTS.get(name, (name, None))


def make_strategy(name: str, **knobs) -> Strategy:
    if name not in STRATEGY_TYPES:
        raise De3Error(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGY_TYPES)}")
    try:
        return STRATEGY_TYPES[name](**knobs)
    except TypeError as exc:
        raise De3Error(f"bad knobs {knobs} for strategy {name!r}: {exc}") from None


def replay(strategy: Strategy, signals: Signals) -> tuple[np.ndarray, np.ndarray]:
    """Exit layer (1-based) and prediction of every sample, from stored signals alone."""
    n, n_layers = signals.num_samples, signals.num_layers
    labels = signals.labels if strategy.needs_labels else None
    if labels is not None and not signals.has_labels:
        raise De3Error("the oracle strategy needs a labeled split")
    state = strategy.init_state(n)
    exit_layer = np.full(n, n_layers, dtype=np.int64)
    running = np.ones(n, dtype=bool)
    for layer in range(1, n_layers):
        leaving = running & strategy.exits(layer, signals.layer(layer), state, labels)
        exit_layer[leaving] = layer
        running &= ~leaving
        if not running.any():
            break
    prediction = signals.pred[np.arange(n), exit_layer - 1]
    return exit_layer, prediction
