"""Stage 4 of the pipeline: the signal pass. One forward pass per split stores every layer's
logits, entropy, r1, r2 and DR (``<split>.npz``), with the study's control arrays and the
prototype-space projection when the checkpoint and the config ask for them."""

from __future__ import annotations

import logging
from pathlib import Path

from de3pipe.config import Config
from de3pipe.data.prepare import PreparedData
from de3pipe.errors import De3Error
from de3pipe.infra import tracking
from de3pipe.infra.io import atomic_dir
from de3pipe.infra.layout import SignalFiles
from de3pipe.method.metrics import task_metrics
from de3pipe.method.signals import Signals

log = logging.getLogger(__name__)


def run(data: Path, model: Path, out: Path, cfg: Config, splits: list[str] | None = None, overwrite: bool = False,
        progress: bool = True) -> dict[str, Signals]:
    """Write the signals folder ``out``: one ``<split>.npz`` per split (default: every prepared
    split but train)."""
    prepared = PreparedData.open(data)
    cfg = cfg.for_task(prepared.task.name)
    with tracking.stage_run(cfg, "signals", prepared.task.name, ("signals",)) as logger:
        written = signal_pass(prepared, model, out, cfg, splits, overwrite, progress)
        for name, result in written.items():
            logger.log_per_layer(f"{name}_mean_entropy_per_layer", result.entropy.mean(0).tolist())
            if result.has_labels:
                primary = prepared.task.metrics[0]
                logger.log_per_layer(f"{name}_{primary}_per_layer", [
                    task_metrics(prepared.task, result.labels, result.pred[:, m])[primary]
                    for m in range(result.num_layers)
                ])
        tracking.log_prepared_splits(logger, prepared, list(written))
    return written


def signal_pass(prepared: PreparedData, model_dir: Path, out: Path, cfg: Config, splits: list[str] | None = None,
                overwrite: bool = False, progress: bool = True) -> dict[str, Signals]:
    """The forward passes, written into ``out`` atomically."""
    from de3pipe.inference.engine import collect_signals, collect_signals_and_features
    from de3pipe.method.controls import StudyControls, control_arrays
    from de3pipe.method.projection import project_prototype_space, save_projection
    from de3pipe.modeling import load_checkpoint
    from de3pipe.modeling.batching import encode_split

    network, tokenizer = load_checkpoint(model_dir, require_stage="prototyped", trust_remote_code=cfg.model.trust_remote_code)
    if network.config.task != prepared.task.name:
        raise De3Error(f"{model_dir} was trained on {network.config.task}, but {prepared.path} holds {prepared.task.name}")
    names = splits if splits is not None else [name for name in prepared.split_names if name != "train"]
    frames = {name: prepared.split(name) for name in names}  # fail on a bad split name before any work
    controls = StudyControls.load(model_dir)
    if controls is not None:
        controls.to(network.device)
    keep_pooled = controls is not None or cfg.signals.prototype_space  # only the study needs the features
    written = {}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        files = SignalFiles(tmp)
        for name, frame in frames.items():
            encoded = encode_split(frame, tokenizer, network.config.max_length)
            meta = {"task": prepared.task.name, "split": name, "checkpoint": str(model_dir), "num_layers": network.num_layers}
            if prepared.task.is_own:  # the class names it found (GLUE's are in the task table)
                meta["label_names"] = list(prepared.task.label_names)
            args = (network, tokenizer, encoded, cfg.signals.batch_size, cfg.signals.eps, meta, progress)
            result, pooled = collect_signals_and_features(*args) if keep_pooled else (collect_signals(*args), None)
            if controls is not None:
                arrays = control_arrays(controls, pooled, result.log_probs, network.config.distance, cfg.signals.eps)
                for key, value in arrays.items():
                    setattr(result, key, value)
            if cfg.signals.prototype_space and name == "validation":
                save_projection(files.prototype_space, project_prototype_space(network, pooled, result.labels, result.pred),
                                meta)
            result.save(files.split(name))
            log.info("%s: %d samples x %d layers", name, result.num_samples, result.num_layers)
            written[name] = result
    return written
