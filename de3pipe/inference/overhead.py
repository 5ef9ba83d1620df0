"""What de3's exit check costs on top of entropy's (opt-in: ``evaluation.overhead``).

Storage: the prototypical networks' parameters and prototype buffers against the model's.
Compute per sample and exit check: matrix-multiply FLOPs counted by torch's FlopCounterMode
(one transformer layer, the internal classifier, the prototype map), plus the element-wise
work of the signals counted by formula (torch's counter skips element-wise operations).
Time: one batch of real inputs at a middle layer, each piece timed with torch.utils.benchmark
(median of repeated runs, every run kept), as a percentage of that layer's own time.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.benchmark import Timer
from torch.utils.flop_counter import FlopCounterMode

from de3pipe.modeling.batching import EncodedSplit, collate
from de3pipe.modeling import MultiExitModel
from de3pipe.method.signals import layer_signals


def _matmul_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _timed(fn, min_run_time: float) -> list[float]:
    """Seconds per call of each timed block (torch.utils.benchmark: at least ``min_run_time`` in all)."""
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return [float(t) for t in timer.blocked_autorange(min_run_time=min_run_time).times]


@torch.inference_mode()
def measure_overhead(
    model: MultiExitModel, tokenizer, split: EncodedSplit, batch_size: int, eps: float, seed: int, min_run_time: float = 0.3
) -> dict:
    model.eval()
    hidden_size, dim, n_labels = model.config.hidden_size, model.config.prototype_dim, model.config.num_labels
    backbone_params = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("prototype_nets."))
    proto_params = sum(p.numel() for p in model.prototype_nets.parameters())
    proto_buffer = model.prototypes.numel()
    element = model.prototypes.element_size()

    rows = np.random.default_rng(seed).choice(len(split), size=min(batch_size, len(split)), replace=False)
    batch = {k: v.to(model.device) for k, v in collate(tokenizer, [split.features[i] for i in rows]).items()}
    mask = batch["attention_mask"]
    layer = (model.num_layers - 1) // 2  # a middle layer (0-based), one with a prototypical network
    hidden = model.embed(batch["input_ids"], mask, batch.get("token_type_ids"))
    context = model.layer_context(hidden, mask)
    for m in range(layer):
        hidden = model.run_layer(m, hidden, context)
    logits, u = model.exit_head(layer, hidden, mask)
    n = hidden.shape[0]

    def run_layer():
        return model.run_layer(layer, hidden, context)

    def head():
        return model.exit_head(layer, hidden, mask)

    def entropy_signal():
        return layer_signals(logits, None, eps)

    def de3_signal():
        return layer_signals(logits, model.distances(layer, model.embed_prototype_space(layer, u)), eps)

    repeats = {name: _timed(fn, min_run_time) for name, fn in
               (("layer", run_layer), ("classifier", head), ("entropy_signal", entropy_signal), ("de3_signal", de3_signal))}
    seconds = {name: float(np.median(times)) for name, times in repeats.items()}
    # Element-wise work per sample, by formula: softmax + entropy ~5K; distances 3Kd + K (diff,
    # square, sum; sqrt); DR and EDR a handful of scalar operations.
    entropy_elementwise = 5 * n_labels
    distance_elementwise = 3 * n_labels * dim + n_labels + 10
    flops = {
        "layer": _matmul_flops(run_layer) / n,
        "classifier": _matmul_flops(head) / n,
        "entropy_signal": _matmul_flops(entropy_signal) / n + entropy_elementwise,
        "prototype_map": _matmul_flops(lambda: model.embed_prototype_space(layer, u)) / n,
    }
    flops["de3_signal"] = flops["entropy_signal"] + flops["prototype_map"] + distance_elementwise
    layer_time = seconds["layer"]
    return {
        "batch_size": n,
        "layer": layer + 1,
        "mean_tokens": float(mask.sum(1).float().mean()),
        "parameters": {
            "model": backbone_params,
            "prototype_networks": proto_params,
            "prototype_buffers": proto_buffer,
            "extra_share": (proto_params + proto_buffer) / backbone_params,
            "extra_bytes": (proto_params + proto_buffer) * element,
            "hidden_size": hidden_size,
            "prototype_dim": dim,
        },
        "flops_per_sample": flops,
        "extra_flops_share_of_layer": (flops["de3_signal"] - flops["entropy_signal"]) / flops["layer"],
        "seconds": seconds,  # the median of the repeated blocks
        "repeats": repeats,
        "percent_of_layer": {
            "classifier": 100 * seconds["classifier"] / layer_time,
            "entropy_signal": 100 * (seconds["classifier"] + seconds["entropy_signal"]) / layer_time,
            "de3_signal": 100 * (seconds["classifier"] + seconds["de3_signal"]) / layer_time,
            "de3_extra": 100 * (seconds["de3_signal"] - seconds["entropy_signal"]) / layer_time,
        },
    }
