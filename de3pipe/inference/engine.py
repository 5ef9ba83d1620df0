"""Batched early-exit inference that really skips work.

The batch runs layer by layer; after each layer the exit strategy looks at the signals of the
rows still running, the rows that exit are finished and dropped from the batch, and trailing
padding no remaining row needs is trimmed. The same loop with no strategy runs every layer
for every row and records all signals: that is the signal pass (``collect_signals``), so the
replay of a strategy over stored signals and its live run here share every computation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from de3pipe.modeling.batching import EncodedSplit, collate, length_sorted_batches
from de3pipe.modeling import MultiExitModel
from de3pipe.method.signals import LayerSignals, Signals, layer_signals

if TYPE_CHECKING:  # the engine runs whatever rule it is given: the signal pass needs no strategy code
    from de3pipe.method.strategies import Strategy


@dataclass
class ExitResult:
    exit_layer: np.ndarray  # (B,) 1-based
    prediction: np.ndarray  # (B,)
    confidence: np.ndarray  # (B,) probability of the prediction at the exit layer


class EarlyExitEngine:
    def __init__(self, model: MultiExitModel, eps: float):
        self.model = model.eval()
        self.eps = eps

    def _signals(self, layer: int, hidden, attention_mask, with_distance: bool, keep_pooled: bool) -> LayerSignals:
        logits, u = self.model.exit_head(layer, hidden, attention_mask)
        distances = None
        if with_distance and layer < self.model.num_layers - 1:
            distances = self.model.distances(layer, self.model.embed_prototype_space(layer, u))
        signals = layer_signals(logits, distances, self.eps)
        if keep_pooled:
            signals.pooled = u.float().cpu().numpy()
        return signals

    @torch.inference_mode()
    def run(
        self,
        batch: dict[str, torch.Tensor],
        strategy: Strategy | None,
        labels: np.ndarray | None = None,
        keep_pooled: bool = False,
    ) -> tuple[ExitResult, list[LayerSignals] | None]:
        """Early exit with ``strategy``; with ``strategy=None``, every layer for every row and all
        signals returned (the signal pass), with each layer's pooled u if ``keep_pooled``."""
        model, n_layers = self.model, self.model.num_layers
        batch = {key: value.to(model.device) for key, value in batch.items()}
        mask = batch["attention_mask"]
        hidden = model.embed(batch["input_ids"], mask, batch.get("token_type_ids"))
        n = hidden.shape[0]
        rows = np.arange(n)  # original position of each running row
        state = strategy.init_state(n) if strategy else {}
        exit_layer = np.full(n, n_layers, dtype=np.int64)
        prediction = np.zeros(n, dtype=np.int64)
        confidence = np.zeros(n, dtype=np.float32)
        collected: list[LayerSignals] = []
        with_distance = strategy is None or strategy.needs_distance
        context = model.layer_context(hidden, mask)
        for layer in range(n_layers):
            hidden = model.run_layer(layer, hidden, context)
            signals = self._signals(layer, hidden, mask, with_distance, keep_pooled)
            if strategy is None:
                collected.append(signals)
            if layer == n_layers - 1:
                leaving = np.ones(len(rows), dtype=bool)
            elif strategy is None:
                continue
            else:
                row_labels = labels[rows] if labels is not None else None
                leaving = strategy.exits(layer + 1, signals, state, row_labels)
            done = rows[leaving]
            exit_layer[done] = layer + 1
            prediction[done] = signals.pred[leaving]
            confidence[done] = np.exp(signals.log_probs[leaving].max(-1))
            if leaving.all():
                break
            if leaving.any():
                keep = ~leaving
                rows = rows[keep]
                state = {k: v[keep] for k, v in state.items()}
                keep_t = torch.from_numpy(keep).to(model.device)
                width = int(mask[keep_t].sum(1).max())  # right padding: trim unused columns
                hidden = hidden[keep_t, :width]
                mask = mask[keep_t, :width]
                context = model.layer_context(hidden, mask)
        return ExitResult(exit_layer, prediction, confidence), (collected if strategy is None else None)

    @torch.inference_mode()
    def run_full(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        """The ordinary model: every layer, only the last classifier. The wall-clock baseline."""
        model = self.model
        batch = {key: value.to(model.device) for key, value in batch.items()}
        mask = batch["attention_mask"]
        hidden = model.embed(batch["input_ids"], mask, batch.get("token_type_ids"))
        context = model.layer_context(hidden, mask)
        for layer in range(model.num_layers):
            hidden = model.run_layer(layer, hidden, context)
        logits, _ = model.exit_head(model.num_layers - 1, hidden, mask)
        return logits.argmax(-1).cpu().numpy()


def collect_signals(
    model: MultiExitModel, tokenizer, split: EncodedSplit, batch_size: int, eps: float, meta: dict, progress: bool = True
) -> Signals:
    """The signal pass: one forward over ``split`` storing every layer's signals for every sample."""
    return _signal_pass(model, tokenizer, split, batch_size, eps, meta, progress, keep_pooled=False)[0]


def collect_signals_and_features(
    model: MultiExitModel, tokenizer, split: EncodedSplit, batch_size: int, eps: float, meta: dict, progress: bool = True
) -> tuple[Signals, np.ndarray]:
    """The signal pass, also returning every layer's pooled representation u (N, M, H), for the
    study's controls and the prototype-space figure; both in the split's row order."""
    return _signal_pass(model, tokenizer, split, batch_size, eps, meta, progress, keep_pooled=True)


def _signal_pass(model, tokenizer, split, batch_size, eps, meta, progress, keep_pooled):
    engine = EarlyExitEngine(model, eps)
    per_batch, pooled, order = [], [], []
    for rows in tqdm(list(length_sorted_batches(split, batch_size)), desc="signals", disable=not progress):
        batch = collate(tokenizer, [split.features[i] for i in rows])
        _, layers = engine.run(batch, None, keep_pooled=keep_pooled)
        per_batch.append(layers)
        if keep_pooled:
            pooled.append(np.stack([layer.pooled for layer in layers], 1))
        order.append(rows)
    order = np.concatenate(order)
    signals = Signals.concatenate(per_batch, split.labels[order], split.idx[order], meta)
    restore = np.argsort(order)  # back to the split's own row order
    for name in Signals.ARRAYS:
        setattr(signals, name, getattr(signals, name)[restore])
    return signals, (np.concatenate(pooled)[restore] if keep_pooled else None)


def measure_wallclock(
    engine: EarlyExitEngine,
    tokenizer,
    split: EncodedSplit,
    strategies: list[Strategy],
    batch_size: int,
    repeats: int = 2,
) -> list[dict]:
    """Wall-clock speed-up of early exit against the full model over the same batches.

    Each timing is the fastest of ``repeats`` runs after one warm-up run of the full model;
    the full model is timed once and shared by every strategy.
    """
    batch_rows = list(length_sorted_batches(split, batch_size))
    batches = [collate(tokenizer, [split.features[i] for i in rows]) for rows in batch_rows]
    labels = [split.labels[rows] for rows in batch_rows]

    def fastest(fn) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    def full() -> None:
        for batch in batches:
            engine.run_full(batch)

    full()  # warm-up
    t_full = fastest(full)
    n_layers, rows = engine.model.num_layers, []
    for strategy in strategies:
        exit_layers: list[np.ndarray] = []

        def early(strategy=strategy, exit_layers=exit_layers) -> None:
            exit_layers.clear()
            for batch, batch_labels in zip(batches, labels, strict=True):
                result, _ = engine.run(batch, strategy, batch_labels if strategy.needs_labels else None)
                exit_layers.append(result.exit_layer)

        t_early = fastest(early)
        layers = np.concatenate(exit_layers)
        rows.append(
            {
                "strategy": strategy.describe(),
                "batch_size": batch_size,
                "samples": len(split),
                "full_seconds": t_full,
                "early_exit_seconds": t_early,
                "layer_speedup": float(n_layers * len(layers) / layers.sum()),
                "wallclock_speedup": t_full / t_early,
                "samples_per_second": len(split) / t_early,
                "full_samples_per_second": len(split) / t_full,
            }
        )
    return rows
