"""Does the guarantee hold on real runs, and what does it cost? For each task of a results folder,
the labeled examples of validation and test are pooled and split at random, many times, into a
calibration part and a test part of today's sizes. Each split recalibrates every strategy's
guaranteed point from the stored signals (no model run) and applies it to its test part:

- violation rate: how often the risk exceeds epsilon. Two ways: *partitions* (the issue's measure:
  the pooled examples cut into today's calibration and test sizes, the test part's risk checked;
  a finite test part adds its noise, and being the calibration part's complement it is
  anti-correlated with it, so this rate may exceed delta for a valid procedure), and *iid, true
  risk* (calibration sets drawn with replacement from the pool, whose own risk is then the true
  risk: the guarantee's exact statement, which must hold at <= delta up to Monte Carlo error);
- the same for the naive rule (the fastest setting whose calibration risk is <= epsilon);
- efficiency: the test speed-up at the guarantee / the test speed-up of the fastest setting whose
  risk on that split's test part is <= epsilon (median over splits).

Both risks on the labeled calibration part; the disagreement risk also with the task's unlabeled
text (the submit split) added to every split's calibration part, which measures what it buys.

Every setting is replayed once on all examples (thresholds at every observed value of the pooled
signals, which holds a threshold in every gap of each split's calibration part: the same decisions
as the stage's own grid), so a split costs only sums over its examples.

    python benchmarks/guarantee.py [--results data] [--splits 500] [--config config/config.yaml]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from machine import describe_machine

RESULTS = Path(__file__).parent / "results"


def partitions(rng, n_pool: int, n_calibration: int, splits: int) -> np.ndarray:
    """(N, S) float32: 1 where an example is in a split's calibration part (the rest is its test part)."""
    member = np.zeros((n_pool, splits), dtype=np.float32)
    for s in range(splits):
        member[rng.permutation(n_pool)[:n_calibration], s] = 1.0
    return member


def iid_draws(rng, n_pool: int, n_calibration: int, splits: int) -> np.ndarray:
    """(N, S) float32: how often each example is drawn into a calibration set of iid draws from the pool."""
    return rng.multinomial(n_calibration, np.full(n_pool, 1 / n_pool), size=splits).T.astype(np.float32)


def middle_of_tie(sequence: np.ndarray, exit_sum: np.ndarray, hits: np.ndarray, chosen: int) -> int:
    """The pooled grid holds several thresholds in one gap of a calibration set, all deciding alike
    there; the stage's own grid has one, at the gap's middle. Take the middle one of the tie."""
    tied = np.flatnonzero((sequence == sequence[chosen]) & (exit_sum == exit_sum[chosen]) & (hits == hits[chosen]))
    return int(tied[len(tied) // 2])


def replicate(sequence, lost, exits, weights, n, num_layers, epsilons, delta, method, *, partition, extra=None) -> dict:
    """Violation rates, median speed-up and efficiency of the guarantee over the weight columns.

    ``partition``: each column's complement is its test part, whose empirical risk is checked (the
    issue's measure: today's sizes, noise of a finite test part included). Otherwise each column is
    an iid calibration sample from the pool, and the pool's own risk, the population's true risk, is
    checked: the exact statement of the guarantee. ``extra``: (hits, exit sum, n) of examples that join
    every calibration set (the unlabeled text as the stage uses it)."""
    from de3pipe.method.guarantee import certify, naive

    hits_cal, exit_cal = lost @ weights, exits @ weights  # (Q, S)
    if partition:
        n_test = lost.shape[1] - n
        risk_eval = (lost.sum(1, keepdims=True) - hits_cal) / n_test
        speed_eval = num_layers * n_test / (exits.sum(1, keepdims=True) - exit_cal)
    else:
        risk_eval = np.broadcast_to(lost.mean(1, keepdims=True), hits_cal.shape)
        speed_eval = np.broadcast_to(num_layers * lost.shape[1] / exits.sum(1, keepdims=True), hits_cal.shape)
    if extra is not None:
        extra_hits, extra_exits, extra_n = extra
        hits_cal, exit_cal, n = hits_cal + extra_hits[:, None], exit_cal + extra_exits[:, None], n + extra_n
    speed_cal = num_layers * n / exit_cal
    out = {}
    for epsilon in epsilons:
        violations, naive_violations, efficiency, speedups = [], [], [], []
        for s in range(weights.shape[1]):
            chosen = certify(sequence, speed_cal[:, s], hits_cal[:, s], n, epsilon, delta, method)
            if chosen is None:
                chosen = int(np.argmin(speed_cal[:, s]))  # the full model: the stage's fallback
            chosen = middle_of_tie(sequence, exit_cal[:, s], hits_cal[:, s], chosen)
            unguarded = middle_of_tie(sequence, exit_cal[:, s], hits_cal[:, s],
                                      naive(speed_cal[:, s], hits_cal[:, s], n, epsilon))
            violations.append(risk_eval[chosen, s] > epsilon + 1e-12)
            naive_violations.append(risk_eval[unguarded, s] > epsilon + 1e-12)
            best = speed_eval[risk_eval[:, s] <= epsilon + 1e-12, s].max()
            speedups.append(speed_eval[chosen, s])
            efficiency.append(speed_eval[chosen, s] / best)
        out[f"{epsilon:g}"] = {
            "n": int(n),
            "violation_rate": float(np.mean(violations)),
            "naive_violation_rate": float(np.mean(naive_violations)),
            "monte_carlo_se": float(np.sqrt(delta * (1 - delta) / len(violations))),
            "median_speedup": float(np.median(speedups)),
            "median_efficiency": float(np.median(efficiency)),
        }
    return out


def evaluate_strategy(settings, full_prediction, n_labeled, n_calibration, labels, splits, num_layers,
                      guarantee) -> dict:
    """Every variant of one strategy: both risks on labeled examples (partitions and iid draws), and
    the disagreement risk with the unlabeled text (fixed in every calibration set, as the stage uses
    it; and pooled with the labeled examples as if exchangeable with them)."""
    from de3pipe.method.guarantee import losses

    full = full_prediction[None, :]  # the full model's prediction, broadcast over the settings
    exits = settings.exit_layer.astype(np.float32)
    labeled, unlabeled = slice(0, n_labeled), slice(n_labeled, exits.shape[1])
    n_unlabeled = exits.shape[1] - n_labeled
    common = dict(num_layers=num_layers, epsilons=guarantee.epsilon, delta=guarantee.delta, method=guarantee.method)
    partition, draws, draws_with_unlabeled = splits  # the same splits for every strategy of the task
    out = {}
    for risk in ("accuracy_drop", "disagreement"):
        lost = losses(risk, settings.prediction[:, labeled], full[:, labeled], labels[labeled]).astype(np.float32)
        out[f"{risk} (partitions)"] = replicate(settings.sequence, lost, exits[:, labeled], partition, n_calibration,
                                                partition=True, **common)
        out[f"{risk} (iid, true risk)"] = replicate(settings.sequence, lost, exits[:, labeled], draws, n_calibration,
                                                    partition=False, **common)
    if n_unlabeled:
        lost_all = losses("disagreement", settings.prediction, full, None).astype(np.float32)
        extra = (lost_all[:, unlabeled].sum(1), exits[:, unlabeled].sum(1), n_unlabeled)
        out["disagreement + unlabeled (partitions)"] = replicate(
            settings.sequence, lost_all[:, labeled], exits[:, labeled], partition, n_calibration, partition=True,
            extra=extra, **common)
        n_all = exits.shape[1]
        out["disagreement + unlabeled (iid, true risk)"] = replicate(
            settings.sequence, lost_all, exits, draws_with_unlabeled, n_calibration + n_unlabeled, partition=False,
            **common)
    return out


def benchmark_task(run: Path, cfg, splits: int, seed: int) -> dict:
    from de3pipe.infra.layout import RunLayout
    from de3pipe.method.guarantee import replay_settings
    from de3pipe.method.signals import Signals
    from de3pipe.method.strategies import calibrated_names, lookup

    files = RunLayout(run).signals  # the SignalFiles of the run
    validation, test = Signals.load(files.split("validation")), Signals.load(files.split("test"))
    unlabeled = [Signals.load(p) for p in files.submits()]
    everything = Signals.pool([validation, test, *unlabeled])
    n_labeled = validation.num_samples + test.num_samples
    rng = np.random.default_rng(seed)
    n_calibration = validation.num_samples
    drawn = (partitions(rng, n_labeled, n_calibration, splits), iid_draws(rng, n_labeled, n_calibration, splits),
             iid_draws(rng, everything.num_samples, n_calibration + everything.num_samples - n_labeled, splits))
    guarantee = cfg.calibration.guarantee
    strategies = {}
    for name in (n for n in calibrated_names(cfg.calibration) if not lookup(n).analysis_only):
        started = time.perf_counter()
        settings = replay_settings(name, everything, lookup(name).rule.grid(cfg.calibration), cfg.signals.eps)
        strategies[name] = evaluate_strategy(settings, everything.pred[:, -1], n_labeled, n_calibration, everything.labels, drawn,
                                             everything.num_layers, guarantee)
        strategies[name]["settings"] = len(settings.knobs)
        print(f"  {name}: {len(settings.knobs)} settings, {time.perf_counter() - started:.0f} s", flush=True)
    return {"calibration": validation.num_samples, "test": test.num_samples,
            "unlabeled": everything.num_samples - n_labeled, "strategies": strategies}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("data"))
    parser.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    parser.add_argument("--splits", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tasks", nargs="*", help="default: every task under --results")
    args = parser.parse_args()
    from de3pipe.config import load_config

    cfg = load_config(args.config)
    if cfg.calibration.guarantee is None:
        raise SystemExit(f"{args.config} sets no calibration.guarantee; nothing to benchmark")
    tasks = {}
    for run in sorted(args.results.glob("*/seed*")):
        task = run.parent.name
        if args.tasks and task not in args.tasks or task in tasks or not (run / "signals").is_dir():
            continue
        print(f"{task} ({run})", flush=True)
        tasks[task] = benchmark_task(run, cfg, args.splits, args.seed)
    guarantee = cfg.calibration.guarantee
    result = {"machine": describe_machine(), "splits": args.splits, "delta": guarantee.delta,
              "method": guarantee.method, "epsilon": guarantee.epsilon, "results": str(args.results), "tasks": tasks}
    for task, entry in tasks.items():
        for name, variants in entry["strategies"].items():
            for variant, by_epsilon in variants.items():
                if variant == "settings":
                    continue
                for epsilon, row in by_epsilon.items():
                    print(f"{task:6s} {name:9s} {variant:42s} eps {epsilon:5s} n {row['n']:5d}: violations "
                          f"{row['violation_rate']:.3f} (naive {row['naive_violation_rate']:.3f}), median speed-up "
                          f"{row['median_speedup']:.2f}x, efficiency {row['median_efficiency']:.2f}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "guarantee.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
