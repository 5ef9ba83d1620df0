"""Frozen operating points: the one format of ``thresholds.json``.

Calibration writes the file; evaluation, ``predict``, the wall-clock timings and the served
model read it, all through this module. A point is a registered strategy with its knobs,
frozen on validation for a :class:`Target`; ``eps`` (the guard of de3's divisions) travels
with the points and nowhere else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from de3pipe.errors import De3Error
from de3pipe.infra.io import read_json, write_json
from de3pipe.method.strategies import Strategy, lookup, make_strategy

ANY = "any"  # the key of an analysis-only point, which has no target


@dataclass(frozen=True, order=True)
class Target:
    """A target layer speed-up, or none (``any``: an analysis-only point). Its text form ("2",
    "1.5", "any") is the key in every file; :meth:`parse` is the one way back."""

    speedup: float | None

    @classmethod
    def parse(cls, value: str | float | Target) -> Target:
        if isinstance(value, Target):
            return value
        if value == ANY:
            return cls(None)
        try:
            speedup = float(value)
        except (TypeError, ValueError):
            raise De3Error(f"target {value!r} is not a speed-up (such as 2 or 1.5) or 'any'") from None
        if not math.isfinite(speedup) or speedup <= 0:
            raise De3Error(f"target {value!r} is not a positive speed-up")
        return cls(speedup)

    @property
    def key(self) -> str:
        return ANY if self.speedup is None else f"{self.speedup:g}"

    @property
    def value(self) -> float:
        """The speed-up as a number; NaN for ``any``."""
        return math.nan if self.speedup is None else self.speedup

    def __str__(self) -> str:
        return self.key


@dataclass(frozen=True)
class Guaranteed:
    """A guaranteed point's name (method/guarantee.py): the risk it bounds and the bound,
    ``accuracy_drop-0.02`` in every file; :meth:`parse` is the one way back."""

    risk: str
    epsilon: float

    @classmethod
    def parse(cls, value: str | Guaranteed) -> Guaranteed | None:
        """The guarantee a key names, or None when it names none (a speed-up target)."""
        if isinstance(value, Guaranteed):
            return value
        risk, _, epsilon = str(value).partition("-")  # a risk name holds no hyphen; an epsilon may ("1e-05")
        if not risk or not risk.replace("_", "").isalpha():
            return None
        try:
            return cls(risk, float(epsilon))
        except ValueError:
            return None

    @property
    def key(self) -> str:
        return f"{self.risk}-{self.epsilon:g}"

    @property
    def value(self) -> float:
        """No target speed-up: NaN, as for ``any``."""
        return math.nan

    def __str__(self) -> str:
        return self.key


def point_key(value: str | float | Target | Guaranteed) -> Target | Guaranteed:
    """A target speed-up ("2", 1.5) or a guarantee ("accuracy_drop-0.02")."""
    return Guaranteed.parse(value) or Target.parse(value) if not isinstance(value, Target) else value


def speedup_key(speedup: float) -> str:
    """The text form of a speed-up (a target's, or a matched speed-up's) in every file."""
    return Target(float(speedup)).key


@dataclass(frozen=True)
class FrozenPoint:
    name: str  # registered strategy name
    target: Target | Guaranteed
    strategy: Strategy
    entry: dict  # the calibration entry (knobs, validation speed-up and metric, status)


def write_thresholds(path: Path, thresholds: dict) -> None:
    write_json(path, thresholds)


def read_thresholds(path: Path) -> dict:
    return read_json(path, what="thresholds file")


def frozen_eps(thresholds: dict) -> float:
    """The eps the thresholds were calibrated with: it travels in thresholds.json and nowhere else."""
    eps = thresholds.get("eps")
    if not isinstance(eps, int | float) or not eps > 0:
        raise De3Error("the thresholds file records no valid eps; re-run `de3pipe calibrate`")
    return float(eps)


def frozen(strategies: dict, eps: float) -> list[FrozenPoint]:
    """``{name: {target or guarantee key: calibration entry}}`` as points."""
    try:
        return [
            FrozenPoint(name, point_key(target), make_strategy(name, eps, **entry["knobs"]), entry)
            for name, targets in strategies.items()
            for target, entry in targets.items()
        ]
    except (KeyError, TypeError, AttributeError) as exc:
        raise De3Error(f"the thresholds file is malformed ({type(exc).__name__}: {exc}); re-run `de3pipe calibrate`") from None


def operating_points(thresholds: dict) -> list[FrozenPoint]:
    """Every point frozen for a named target (and the analysis-only points)."""
    if not isinstance(thresholds.get("strategies"), dict):
        raise De3Error("the thresholds file has no 'strategies'; re-run `de3pipe calibrate`")
    return frozen(thresholds["strategies"], frozen_eps(thresholds))


def curve_points(thresholds: dict) -> list[FrozenPoint]:
    """Each strategy's points over the dense target grid: its calibrated curve."""
    curves = thresholds.get("curves")
    if not isinstance(curves, dict):
        raise De3Error("the thresholds file has no calibrated curves (an older format); re-run `de3pipe calibrate`")
    try:
        by_target = {name: {speedup_key(p["target"]): p for p in points} for name, points in curves.items()}
    except (KeyError, TypeError) as exc:
        raise De3Error(f"the thresholds file's curves are malformed ({exc}); re-run `de3pipe calibrate`") from None
    return frozen(by_target, frozen_eps(thresholds))


def certified_points(thresholds: dict) -> list[FrozenPoint]:
    """Every guaranteed point (none where calibration certified none)."""
    guaranteed = thresholds.get("guaranteed")
    if guaranteed is None:
        return []
    if not isinstance(guaranteed, dict) or not isinstance(guaranteed.get("strategies"), dict):
        raise De3Error("the thresholds file's guaranteed points are malformed; re-run `de3pipe calibrate`")
    return frozen(guaranteed["strategies"], frozen_eps(thresholds))


def describe_guarantees(thresholds: dict) -> list[str]:
    """One sentence per guaranteed point, as a model's description states it."""
    guaranteed = thresholds.get("guaranteed")
    if not guaranteed:
        return []
    words = {"accuracy_drop": "loses at most {e} accuracy (the full model right, the exit wrong on at most {e} of texts)",
             "disagreement": "changes at most {e} of the full model's predictions"}
    out = []
    for point in certified_points(thresholds):
        entry, guarantee = point.entry, point.target
        percent = guarantee.epsilon * 100
        share = f"{percent:.0f}%" if math.isclose(percent, round(percent)) else f"{percent:g}%"
        out.append(
            f"{point.name}@{guarantee.key}: {words[guarantee.risk].format(e=share)} with probability >= "
            f"{1 - entry['delta']:g} (Learn-then-Test, {entry['method']}, n = {entry['n']} calibration examples, "
            f"risk {entry['calibration_risk']:.2%} there, upper bound {entry['calibration_upper_bound']:.2%}); {entry['calibration_speedup']:.2f}x fewer layers on "
            "the calibration examples" + ("" if entry["status"] == "ok" else f"; {entry['status']}")
        )
    return out


def sensitivity_points(thresholds: dict) -> list[tuple[float, FrozenPoint]]:
    """The secondary knob on its own axis: (the knob's value, a point of the calibrated curve
    frozen with the knob fixed at that value), every value's whole curve."""
    eps = frozen_eps(thresholds)
    try:
        return [
            (float(value), point)
            for name, values in thresholds.get("per_lambda", {}).items()
            for value, points in values.items()
            for point in frozen({name: {speedup_key(p["target"]): p for p in points}}, eps)
        ]
    except (KeyError, TypeError, AttributeError) as exc:
        raise De3Error(f"the thresholds file's per-lambda curves are malformed ({exc}); re-run `de3pipe calibrate`") from None


def servable_point(thresholds: dict, source: Path, name: str, target: str | float | Target) -> FrozenPoint:
    """The point ``name``@``target`` for classifying new texts, or one line saying what is available."""
    wanted = point_key(target)
    points = {(p.name, p.target): p for p in operating_points(thresholds) + certified_points(thresholds)}
    if (name, wanted) not in points:
        available = ", ".join(f"{n}@{t}" for n, t in points if lookup(n).servable)
        raise De3Error(f"no calibrated point {name}@{_shown(wanted)} in {source}; available: {available}")
    entry = lookup(name)
    if entry.is_variant:
        raise De3Error(f"{name} is a study analysis replayed on stored signals; classify with de3 or entropy")
    if entry.analysis_only:
        raise De3Error(f"the {name} strategy needs gold labels and cannot classify new texts")
    return points[(name, wanted)]


def _shown(target: Target | Guaranteed) -> str:
    return f"{target}x" if isinstance(target, Target) and target.speedup is not None else str(target)
