"""Exit strategies and their registry (method.md, "Strategies to compare").

A strategy is an online rule: at each layer m < M it sees the signals of the samples still
running and says which leave now. The same rule drives both the replay over stored signals
(:func:`replay`, for calibration and evaluation) and the batched engine (``engine.py``),
so the two cannot disagree. Layers are 1-based; a sample that never exits leaves at M.

Every fact about a strategy lives on its class, and :func:`register` makes it known to
calibration, evaluation, the report, ``predict`` and the config schema at once: its knobs (the
dataclass fields), its knob grid and the defaults of its configurable knob values (config:
``calibration.grids.<name>``), its secondary knob, whether it is analysis-only, its display
order (registration order) and its study variants (the same rule replayed on another view of
the signals, ``Signals.view``). Adding a strategy is adding one registered class.
"""

from __future__ import annotations

import dataclasses
import difflib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from de3pipe.errors import De3Error
from de3pipe.method.signals import LayerSignals, Signals, edr

if TYPE_CHECKING:
    from de3pipe.config import CalibrationConfig, Config, EvaluationConfig, ReportConfig

State = dict[str, np.ndarray]


def threshold_grid(values: np.ndarray, n: int | None) -> np.ndarray:
    """Thresholds between consecutive quantiles of ``values`` plus both ends: each one sits
    between observed values, so tiny float differences never flip a decision. ``n=None`` is
    every observed value: a threshold in each gap between consecutive distinct values, so the
    grid holds every decision any threshold could make on ``values`` (the guarantee needs this)."""
    values = values.astype(np.float64)
    quantiles = np.unique(values if n is None else np.quantile(values, np.linspace(0, 1, n)))
    span = max(float(quantiles[-1] - quantiles[0]), 1e-6)
    middles = (quantiles[:-1] + quantiles[1:]) / 2
    return np.concatenate([[quantiles[0] - span], middles, [quantiles[-1] + span]])


def _below(values: np.ndarray, tau: float) -> np.ndarray:
    """values < tau, compared in float64: float32 signals compared with a Python float compare in
    float32 (NumPy 2), where a threshold between two neighbouring float32 values rounds onto one."""
    return values.astype(np.float64) < tau


def _above(values: np.ndarray, tau: float) -> np.ndarray:
    """values > tau, compared in float64 (see :func:`_below`)."""
    return values.astype(np.float64) > tau


def _inner(values: np.ndarray, signals: Signals) -> np.ndarray:
    """``values`` at the layers where exit decisions happen (1..M-1)."""
    return values[:, : signals.num_layers - 1]


@dataclass(frozen=True)
class Strategy(ABC):
    name: ClassVar[str]
    needs_distance: ClassVar[bool] = False
    needs_labels: ClassVar[bool] = False
    analysis_only: ClassVar[bool] = False  # needs gold labels: never calibrated, compared or served
    secondary_knob: ClassVar[str | None] = None  # a knob besides the threshold, chosen on validation per target
    sensitivity: ClassVar[bool] = False  # calibration.per_lambda calibrates a curve per secondary-knob value
    checks_exits: ClassVar[bool] = True  # runs an exit check (head and signal) at every layer a sample passes
    variants: ClassVar[dict[str, str]] = {}  # study variant name -> the Signals.view it replays on
    grid_defaults: ClassVar[dict[str, tuple]] = {}  # values calibration tries per configurable knob
    grid_minimum: ClassVar[dict[str, float]] = {}  # the smallest valid value of each configurable knob

    @classmethod
    def knob_names(cls) -> tuple[str, ...]:
        """The knobs that define an operating point: the dataclass fields but ``eps``."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "eps")

    @classmethod
    def integer_knobs(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.type in ("int", int))

    @classmethod
    def grid(cls, cfg: CalibrationConfig) -> dict[str, list]:
        """The configurable knobs' values: the strategy's defaults, or ``calibration.grids.<name>``."""
        values = {knob: list(v) for knob, v in cls.grid_defaults.items()} | dict(cfg.grids.get(cls.name, {}))
        return {knob: [int(x) if knob in cls.integer_knobs() else float(x) for x in v] for knob, v in values.items()}

    @classmethod
    def check_grid(cls, values: dict[str, list]) -> None:
        """One line for a knob this strategy lacks, an empty list, or a value out of range."""
        for knob, items in values.items():
            where = f"calibration.grids.{cls.name}.{knob}"
            if knob not in cls.grid_defaults:
                known = ", ".join(cls.grid_defaults) or "none"
                raise De3Error(f"calibration.grids.{cls.name}: {cls.name} has no configurable knob {knob!r} (it has: {known})")
            if not items:
                raise De3Error(f"{where} is empty; list at least one value (default {list(cls.grid_defaults[knob])})")
            low = cls.grid_minimum.get(knob)
            if low is not None and any(v < low for v in items):
                raise De3Error(f"{where}: every value must be >= {low:g}; got {items}")
            if knob in cls.integer_knobs() and any(float(v) != int(v) for v in items):
                raise De3Error(f"{where}: {knob} takes whole numbers; got {items}")

    def init_state(self, n: int) -> State:
        return {}

    @abstractmethod
    def exits(self, layer: int, signals: LayerSignals, state: State, labels: np.ndarray | None) -> np.ndarray:
        """Boolean mask of the rows that exit at ``layer``; may update ``state`` (one entry per row)."""

    @classmethod
    @abstractmethod
    def knob_grid(cls, signals: Signals, grid: dict[str, list], n_thresholds: int | None, eps: float
                  ) -> Iterator[dict]:
        """Every knob setting calibration tries on ``signals`` (the validation split), from the
        configurable knobs' values ``grid`` and ``n_thresholds`` thresholds per curve (None:
        every gap between observed values, :func:`threshold_grid`)."""

    def knobs(self) -> dict:
        """The knobs that define this operating point (``eps`` is the run's, not a knob)."""
        return {k: v for k, v in asdict(self).items() if k != "eps"}

    def describe(self) -> str:
        knobs = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.knobs().items())
        return f"{self.name}({knobs})"


@dataclass(frozen=True)
class RegisteredName:
    """A name the config, the report and the thresholds file use: a strategy, or a study
    variant of one (the same rule on another view of the signals)."""

    name: str
    rule: type[Strategy]
    view: str | None = None

    @property
    def is_variant(self) -> bool:
        return self.view is not None

    @property
    def analysis_only(self) -> bool:
        return self.rule.analysis_only

    @property
    def secondary_knob(self) -> str | None:
        return self.rule.secondary_knob

    @property
    def exit_check(self) -> str | None:
        """The piece of ``evaluation.overhead``'s timings one exit check costs: the classifier and
        entropy, or with the prototype map and distances (de3's signal; the control heads and the
        no-DAR means sit on the same map); None for a rule that checks nothing (a fixed exit)."""
        if not self.rule.checks_exits:
            return None
        return "de3_signal" if self.rule.needs_distance or self.is_variant else "entropy_signal"

    @property
    def servable(self) -> bool:
        """Can classify new texts live (predict, the engine): not a replayed study view, no labels needed."""
        return not self.is_variant and not self.analysis_only


_RULES: dict[str, type[Strategy]] = {}


def register(cls: type[Strategy]) -> type[Strategy]:
    """Make a strategy class (and its study variants) known everywhere."""
    for name in (cls.name, *cls.variants):
        if name in _RULES or any(name in rule.variants for rule in _RULES.values()):
            raise ValueError(f"strategy name {name!r} is registered twice")
    _RULES[cls.name] = cls
    return cls


def registry() -> dict[str, RegisteredName]:
    """Every name, in display order: the strategies as registered, then their study variants."""
    names = {name: RegisteredName(name, rule) for name, rule in _RULES.items()}
    for rule in _RULES.values():
        names |= {variant: RegisteredName(variant, rule, view) for variant, view in rule.variants.items()}
    return names


def lookup(name: str, where: str = "") -> RegisteredName:
    names = registry()
    if name not in names:
        close = difflib.get_close_matches(str(name), names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise De3Error(f"{where + ': ' if where else ''}unknown strategy {name!r}{hint} (registered: {', '.join(names)})")
    return names[name]


def strategy_names(*, variants: bool = True, analysis: bool = True) -> tuple[str, ...]:
    return tuple(n for n, r in registry().items() if (variants or not r.is_variant) and (analysis or not r.analysis_only))


def compared_names() -> list[str]:
    """Strategies in display order (registration order, then the study variants), analysis-only
    ones left out: the names the report compares and draws."""
    return [name for name, entry in registry().items() if not entry.analysis_only]


def calibrated_names(cfg: CalibrationConfig) -> tuple[str, ...]:
    """The strategies calibration sweeps: ``calibration.strategies``, by default every registered
    strategy (study variants need the study's controls, so they are named explicitly)."""
    return tuple(cfg.strategies) if cfg.strategies is not None else strategy_names(variants=False)


def check_calibration(cfg: CalibrationConfig) -> None:
    """``calibration.strategies`` and ``calibration.grids`` against the registry: one line for the
    first problem. ``config.py`` keeps strategy names as plain names, so that the stages which
    never replay a strategy (prepare, the training stages) do not depend on this module."""
    for name in calibrated_names(cfg):
        lookup(name, "calibration.strategies")
    for name, grid in cfg.grids.items():
        lookup(name, "calibration.grids").rule.check_grid(grid)


def check_evaluation(cfg: EvaluationConfig) -> None:
    for name in cfg.wallclock_strategies:
        if not lookup(name, "evaluation.wallclock_strategies").servable:
            raise De3Error(f"evaluation.wallclock_strategies: {name} cannot run live (a study variant or "
                           "analysis-only); time de3, entropy or another servable strategy")


def check_report(cfg: ReportConfig) -> None:
    for key, names in (("report.reference", [cfg.reference]), ("report.comparisons", cfg.comparisons),
                       ("report.primary.against", cfg.primary.against)):
        for name in names:
            lookup(name, key)


def check_config(cfg: Config) -> None:
    """Every strategy name and knob grid of a config (the workflow checks this before any job)."""
    check_calibration(cfg.calibration)
    check_evaluation(cfg.evaluation)
    check_report(cfg.report)


def make_strategy(name: str, eps: float | None = None, **knobs) -> Strategy:
    """The rule behind ``name`` (a strategy or a variant) with ``knobs``; ``eps`` goes to the
    rules that guard a division with it, and is required by them."""
    rule = lookup(name).rule
    if any(f.name == "eps" for f in dataclasses.fields(rule)):
        if eps is None:
            raise De3Error(f"strategy {name!r} needs the run's eps (thresholds.json records it; re-run calibrate)")
        knobs["eps"] = eps
    try:
        return rule(**knobs)
    except TypeError as exc:
        raise De3Error(f"bad knobs {knobs} for strategy {name!r}: {exc}") from None


@register
@dataclass(frozen=True)
class DE3(Strategy):
    """DE3-BERT: exit when EDR = (lam+1)/(lam/DR + 1/E) < tau; lam = 0 is entropy alone."""

    tau: float
    lam: float
    eps: float
    name: ClassVar[str] = "de3"
    needs_distance: ClassVar[bool] = True
    secondary_knob: ClassVar[str | None] = "lam"
    sensitivity: ClassVar[bool] = True
    variants: ClassVar[dict[str, str]] = {"de3_nodar": "nodar"}
    grid_defaults: ClassVar[dict[str, tuple]] = {"lam": (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)}  # 0: entropy alone
    grid_minimum: ClassVar[dict[str, float]] = {"lam": 0.0}

    def exits(self, layer, signals, state, labels):
        return _below(edr(signals.entropy, signals.dr, self.lam, self.eps), self.tau)

    @classmethod
    def knob_grid(cls, signals, grid, n_thresholds, eps):
        for lam in grid["lam"]:
            for tau in threshold_grid(edr(_inner(signals.entropy, signals), signals.dr, lam, eps), n_thresholds):
                yield {"tau": float(tau), "lam": float(lam)}


@register
@dataclass(frozen=True)
class Entropy(Strategy):
    """DeeBERT: exit when the normalised entropy E < tau."""

    tau: float
    name: ClassVar[str] = "entropy"
    variants: ClassVar[dict[str, str]] = {"control_entropy": "control"}

    def exits(self, layer, signals, state, labels):
        return _below(signals.entropy, self.tau)

    @classmethod
    def knob_grid(cls, signals, grid, n_thresholds, eps):
        for tau in threshold_grid(_inner(signals.entropy, signals), n_thresholds):
            yield {"tau": float(tau)}


@register
@dataclass(frozen=True)
class MaxProb(Strategy):
    """Exit when the largest class probability > tau."""

    tau: float
    name: ClassVar[str] = "maxprob"
    variants: ClassVar[dict[str, str]] = {"control_maxprob": "control"}

    def exits(self, layer, signals, state, labels):
        return _above(signals.maxprob, self.tau)

    @classmethod
    def knob_grid(cls, signals, grid, n_thresholds, eps):
        for tau in threshold_grid(np.exp(_inner(signals.log_probs, signals).max(-1)), n_thresholds):
            yield {"tau": float(tau)}


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


@register
@dataclass(frozen=True)
class Patience(_Counting):
    """PABEE: exit when the prediction stayed the same for t consecutive layers (t+1 agreeing layers)."""

    t: int
    name: ClassVar[str] = "patience"

    def extends_streak(self, signals, state):
        return signals.pred == state["prev"]

    @classmethod
    def knob_grid(cls, signals, grid, n_thresholds, eps):
        for t in range(1, signals.num_layers):
            yield {"t": t}


@register
@dataclass(frozen=True)
class PCEE(_Counting):
    """PCEE-BERT: exit when E < tau held for t consecutive layers."""

    tau: float
    t: int
    name: ClassVar[str] = "pcee"
    secondary_knob: ClassVar[str | None] = "t"
    grid_defaults: ClassVar[dict[str, tuple]] = {"t": (1, 2, 3)}
    grid_minimum: ClassVar[dict[str, float]] = {"t": 1}

    def extends_streak(self, signals, state):
        return _below(signals.entropy, self.tau)

    @classmethod
    def knob_grid(cls, signals, grid, n_thresholds, eps):
        for t in grid["t"]:
            for tau in threshold_grid(_inner(signals.entropy, signals), n_thresholds):
                yield {"tau": float(tau), "t": t}


@register
@dataclass(frozen=True)
class Distance(Strategy):
    """Ablation: exit on the distance ratio alone, DR < tau."""

    tau: float
    name: ClassVar[str] = "distance"
    needs_distance: ClassVar[bool] = True

    def exits(self, layer, signals, state, labels):
        return _below(signals.dr, self.tau)

    @classmethod
    def knob_grid(cls, signals, grid, n_thresholds, eps):
        for tau in threshold_grid(signals.dr, n_thresholds):
            yield {"tau": float(tau)}


@register
@dataclass(frozen=True)
class Static(Strategy):
    """Always exit at layer k (a smaller model, for reference)."""

    k: int
    name: ClassVar[str] = "static"
    checks_exits: ClassVar[bool] = False

    def exits(self, layer, signals, state, labels):
        return np.full(len(signals.pred), layer >= self.k)

    @classmethod
    def knob_grid(cls, signals, grid, n_thresholds, eps):
        for k in range(1, signals.num_layers + 1):
            yield {"k": k}


@register
@dataclass(frozen=True)
class Oracle(Strategy):
    """Analysis only: the first layer whose prediction is correct (needs labels)."""

    name: ClassVar[str] = "oracle"
    needs_labels: ClassVar[bool] = True
    analysis_only: ClassVar[bool] = True

    def exits(self, layer, signals, state, labels):
        if labels is None:
            raise De3Error("the oracle strategy needs labels; it is for analysis on labeled splits only")
        return signals.pred == labels

    @classmethod
    def knob_grid(cls, signals, grid, n_thresholds, eps):
        yield {}


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


def replay_named(name: str, strategy: Strategy, signals: Signals) -> tuple[np.ndarray, np.ndarray]:
    """Replay ``strategy`` on the signals view the registered ``name`` reads (study variants)."""
    return replay(strategy, signals.view(lookup(name).view))
