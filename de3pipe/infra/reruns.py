"""Did a rerun reproduce the committed numbers? The headline figures of every run (the compact
files DVC reads as metrics: ``evaluation/headline/*.json``) against a reference, within a stated
tolerance.

The reference is either the files committed at a git revision (``HEAD`` by default: what a fresh
clone promises) or another results folder (two runs side by side, as the rerun measurements in
README "Reruns" were made). The tolerances are measured, not guessed (README, "Reruns"):
- the same machine, the same threads, any precision: bit-exact (``EXACT``);
- another x86 machine or thread count, ``finetune.precision: fp32``: ``ACROSS_MACHINES``.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from de3pipe.errors import De3Error
from de3pipe.infra.layout import DEFAULT_RESULTS, RunLayout

METRIC_FIELDS = ("metric", "matched", "risk")  # test metrics and risks, on the 0-1 scale: compared in points


@dataclass(frozen=True)
class Tolerance:
    metric: float  # absolute, on the 0-1 scale of accuracy, F1 or MCC
    speedup: float  # relative: |now / reference - 1|


EXACT = Tolerance(0.0, 0.0)
# fp32 with 1 or 2 threads on this project's machines (README, "Reruns"): a few test examples
# change their exit or prediction, so a metric moves by at most a few tenths of a point.
ACROSS_MACHINES = Tolerance(metric=0.005, speedup=0.01)


@dataclass(frozen=True)
class Difference:
    file: str  # inside the results folder
    field: str
    reference: float | None
    current: float | None

    @property
    def delta(self) -> float | None:
        if self.reference is None or self.current is None:
            return None
        if self.field in METRIC_FIELDS:
            return self.current - self.reference
        return self.current / self.reference - 1

    def within(self, tolerance: Tolerance) -> bool:
        if self.reference is None or self.current is None:
            return self.reference is None and self.current is None
        limit = tolerance.metric if self.field in METRIC_FIELDS else tolerance.speedup
        return abs(self.delta) <= limit + 1e-12


def headline_files(results: Path) -> dict[str, dict]:
    """Every run's headline records under ``results``, keyed by their path inside it
    (``sst2/seed42/evaluation/headline/de3@2x.json``)."""
    found = {}
    for folder in sorted(Path(results).glob("*/seed*")):
        headline = RunLayout(folder).evaluation.headline
        for path in sorted(headline.glob("*.json")):
            found[path.relative_to(results).as_posix()] = _record(path.read_text(encoding="utf-8"), path)
    return found


def committed_headline(results: str = DEFAULT_RESULTS, revision: str = "HEAD") -> dict[str, dict]:
    """The headline records committed at ``revision`` under ``results``, keyed as :func:`headline_files`."""
    results = Path(results).as_posix().rstrip("/")
    listing = _git("ls-tree", "-r", "--name-only", revision, "--", results)
    names = [name for name in listing.splitlines() if "/evaluation/headline/" in name and name.endswith(".json")]
    if not names:
        raise De3Error(f"no headline metrics committed under {results}/ at {revision}; commit a run's "
                       "evaluation/headline/ files first, or compare with --reference DIR")
    return {name.removeprefix(f"{results}/"): _record(_git("show", f"{revision}:{name}"), name) for name in names}


def compare(reference: dict[str, dict], current: dict[str, dict]) -> list[Difference]:
    """One row per headline file and field, on either side."""
    rows = []
    for name in sorted(set(reference) | set(current)):
        old, new = reference.get(name, {}), current.get(name, {})
        for field in sorted(set(old) | set(new)):
            rows.append(Difference(name, field, old.get(field), new.get(field)))
    return rows


def summary_lines(rows: list[Difference], tolerance: Tolerance) -> tuple[list[str], bool]:
    """What a user reads: the figures that differ, then one verdict line; and whether all agree."""
    outside = [r for r in rows if not r.within(tolerance)]
    moved = [r for r in rows if r.delta not in (None, 0.0) or r in outside]
    lines = [f"{'file':50s} {'field':8s} {'reference':>10s} {'now':>10s} {'difference':>11s}"] if moved else []
    for row in moved:
        mark = "" if row.within(tolerance) else "  OUTSIDE"
        delta = "missing" if row.delta is None else (f"{row.delta * 100:+.2f} pts" if row.field in METRIC_FIELDS
                                                     else f"{row.delta * 100:+.2f}%")
        lines.append(f"{row.file:50s} {row.field:8s} {_number(row.reference):>10s} {_number(row.current):>10s} "
                     f"{delta:>11s}{mark}")
    same = sum(1 for r in rows if r.delta == 0.0)
    verdict = (f"{len(rows)} headline figures: {same} identical, {len(rows) - same - len(outside)} within the "
               f"tolerance (metrics ±{tolerance.metric * 100:g} points, speed-ups ±{tolerance.speedup * 100:g}%), "
               f"{len(outside)} outside it")
    lines.append(verdict + (": the rerun agrees." if not outside else ": the rerun does NOT agree."))
    return lines, not outside


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _record(text: str, where) -> dict:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise De3Error(f"headline file {where} is not valid JSON ({exc}); re-run `de3pipe evaluate`") from None
    if not isinstance(record, dict):
        raise De3Error(f"headline file {where} holds no record; re-run `de3pipe evaluate`")
    return record


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise De3Error("git is not installed; compare with --reference DIR instead") from None
    if done.returncode != 0:
        why = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit status {done.returncode}"
        raise De3Error(f"git {args[0]} failed: {why}; name a revision of this repository with --against, or a "
                       "results folder with --reference")
    return done.stdout
