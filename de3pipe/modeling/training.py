"""The two training stages of method.md, each reading and writing a checkpoint folder.

Stage 1 (:func:`finetune`): backbone + every internal classifier, weighted cross-entropy.
Stage 2 (:func:`train_prototypes`): prototypical networks with DAR while the prototypes follow
their EMA; with the backbone frozen (default) the per-layer pooled features are computed once
and cached, so epochs cost only the small linear maps.
"""

from __future__ import annotations

import logging
import math
import random
import re
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from de3pipe.modeling.batching import (
    EncodedSplit,
    collate,
    encode_split,
    length_grouped_batches,
    length_sorted_batches,
    resolve_device,
)
from de3pipe.config import Config, FinetuneConfig, OptimConfig
from de3pipe.method.controls import StudyControls
from de3pipe.data.prepare import PreparedData
from de3pipe.errors import De3Error
from de3pipe.infra.io import atomic_dir
from de3pipe.method.metrics import task_metrics
from de3pipe.modeling import MultiExitModel, load_checkpoint

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def layer_weights(n_layers: int, kind: str) -> torch.Tensor:
    """IC loss weights: linear is PABEE's sum_m m*CE_m / sum_m m."""
    raw = torch.arange(1, n_layers + 1, dtype=torch.float32) if kind == "linear" else torch.ones(n_layers)
    return raw / raw.sum()


def dar_loss(distances: torch.Tensor, labels: torch.Tensor, kind: str, margin: float) -> torch.Tensor:
    """Distance-aware regularisation for one layer; ``distances`` (B, K) to the prototypes."""
    if kind == "ce":  # prototypical-network loss: softmax over negative distances
        return nn.functional.cross_entropy(-distances, labels)
    gold = distances.gather(1, labels[:, None]).squeeze(1)
    other = distances.scatter(1, labels[:, None], float("inf")).min(-1).values
    return torch.relu(gold - other + margin).mean()


def _ic_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The weighted internal-classifier loss over every exit, and each exit's loss; ``logits`` (M, B, K)."""
    losses = torch.stack([nn.functional.cross_entropy(layer_logits, labels) for layer_logits in logits])
    stop_unless_finite(losses, "the internal classifier's loss", "stage 1 (finetune)", step)
    return (weights * losses).sum(), losses


def _step_record(step: int, lr: float, loss: torch.Tensor, per_layer: torch.Tensor, layer_name: str) -> dict:
    """One optimiser step's training-curve point: the loss, each exit's loss (``layer_name``) and the
    learning rate the step used (the MLflow run charts these against the step)."""
    per_exit = {f"{layer_name}.layer{m}": v for m, v in enumerate(per_layer.tolist(), 1)}
    return {"step": step, "lr": lr, "loss": float(loss.detach()), **per_exit}


def _not_finite(stage: str, what: str, step: int) -> De3Error:
    return De3Error(f"{stage}: {what} is not finite at step {step + 1}; nothing was written. "
                    "Lower the stage's learning_rate or check the training data")


def stop_unless_finite(per_layer: torch.Tensor, what: str, stage: str, step: int) -> None:
    """One clear line, naming the layer and the step, when a per-layer loss is NaN or infinite."""
    bad = (~torch.isfinite(per_layer.detach())).nonzero()
    if len(bad):
        raise _not_finite(stage, f"{what} of layer {int(bad[0, 0]) + 1}", step)


_LAYER_OF_PARAMETER = re.compile(r"(?:encoder\.layer|classifiers|poolers|prototype_nets|heads)\.(\d+)\.")


def optimizer_step(loss: torch.Tensor, named: list[tuple[str, nn.Parameter]], optimizer, scheduler,
                    max_grad_norm: float, stage: str, step: int, scaler: torch.amp.GradScaler | None = None) -> None:
    """Backward, clip and step. With an fp16 ``scaler`` an overflowing step is skipped (the scaler's
    job); otherwise a non-finite gradient stops the stage, naming where it is."""
    optimizer.zero_grad(set_to_none=True)
    params = [p for _, p in named if p.requires_grad]
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(params, max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        return
    loss.backward()
    norm = nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
    if not torch.isfinite(norm):  # find where (before clipping mixes every gradient), then stop
        name = next(n for n, p in named if p.grad is not None and not torch.isfinite(p.grad).all())
        match = _LAYER_OF_PARAMETER.search(name)
        where = f"layer {int(match.group(1)) + 1} ({name})" if match else name
        raise _not_finite(stage, f"the gradient of {where}", step)
    nn.utils.clip_grads_with_norm_(params, max_grad_norm, norm)
    optimizer.step()
    scheduler.step()


class Steps:
    """The optimiser steps of one training run, shared by every loop: the step itself (backward,
    clip, step; :func:`optimizer_step`), its row on the loss curve, the progress bar, and whether
    the step budget is spent."""

    def __init__(self, named, optimizer, scheduler, max_grad_norm: float, stage: str, total: int,
                 bar=None, curve_name: str | None = None, scaler: torch.amp.GradScaler | None = None):
        self.named, self.optimizer, self.scheduler, self.scaler = named, optimizer, scheduler, scaler
        self.max_grad_norm, self.stage, self.total, self.bar, self.curve_name = max_grad_norm, stage, total, bar, curve_name
        self.step, self.curve = 0, []

    def take(self, loss: torch.Tensor, per_layer: torch.Tensor | None = None, shown: torch.Tensor | None = None) -> bool:
        """One step on ``loss``; records ``per_layer`` on the curve and shows ``shown`` (default the
        loss) on the bar. True once the budget of steps is spent."""
        lr = self.optimizer.param_groups[0]["lr"]
        optimizer_step(loss, self.named, self.optimizer, self.scheduler, self.max_grad_norm, self.stage, self.step,
                       self.scaler)
        self.step += 1
        if self.curve_name is not None:
            self.curve.append(_step_record(self.step, lr, loss, per_layer.detach(), self.curve_name))
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix({self.curve_name or "loss": f"{(loss if shown is None else shown).item():.4f}"})
        return self.step >= self.total


def make_optimizer(params: list[tuple[str, nn.Parameter]], cfg: OptimConfig, total_steps: int):
    """AdamW over the trainable parameters (fused where torch has the kernel, as Hugging Face's
    Trainer defaults to), with linear warm-up and decay."""
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    params = [(n, p) for n, p in params if p.requires_grad]
    groups = [
        {"params": [p for n, p in params if not n.endswith(no_decay)], "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in params if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    fused = all(p.device.type in ("cpu", "cuda") for _, p in params)
    optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate, fused=fused)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
    return optimizer, scheduler


def total_steps(n_rows: int, cfg: OptimConfig) -> tuple[int, int]:
    per_epoch = math.ceil(n_rows / cfg.batch_size)
    total = math.ceil(cfg.epochs * per_epoch)
    return per_epoch, min(total, cfg.max_steps) if cfg.max_steps else total


def shuffled_batches(n_rows: int, batch_size: int, generator: torch.Generator):
    order = torch.randperm(n_rows, generator=generator).numpy()
    for start in range(0, n_rows, batch_size):
        yield order[start : start + batch_size]


def training_batches(split: EncodedSplit, opt: FinetuneConfig, generator: torch.Generator):
    """One epoch of stage-1 batches: grouped by length (the default) or uniformly shuffled."""
    if opt.group_by_length:
        return length_grouped_batches(split.lengths, opt.batch_size, generator)
    return shuffled_batches(len(split), opt.batch_size, generator)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The dtype the training forward pass autocasts to (None: fp32). auto takes bf16 where the
    hardware computes it natively (a CPU with avx512_bf16 or AMX, a GPU with bf16), fp16 on other
    GPUs, and stays fp32 on other CPUs, where emulated bf16 is slower than fp32."""
    if precision == "fp32":
        return None
    if precision != "auto":
        return torch.bfloat16 if precision == "bf16" else torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()):
        return torch.bfloat16
    return None


def freeze_word_embeddings(model: MultiExitModel) -> None:
    model.backbone.get_input_embeddings().weight.requires_grad_(False)


@torch.inference_mode()
def forward_split(model: MultiExitModel, tokenizer, split: EncodedSplit, batch_size: int, progress: bool = False):
    """Every layer's predictions (N, M) and pooled representations u (N, M, H), in split order."""
    model.eval()
    n = len(split)
    preds = np.zeros((n, model.num_layers), dtype=np.int64)
    pooled = torch.zeros(n, model.num_layers, model.config.hidden_size)
    for rows in tqdm(list(length_sorted_batches(split, batch_size)), desc="forward", disable=not progress):
        batch = collate(tokenizer, [split.features[i] for i in rows], model.device)
        logits, u = model(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
        preds[rows] = logits.argmax(-1).T.cpu().numpy()
        pooled[torch.from_numpy(rows)] = u.transpose(0, 1).float().cpu()
    return preds, pooled


def _per_layer_metrics(task, labels: np.ndarray, preds: np.ndarray) -> list[dict[str, float]]:
    return [task_metrics(task, labels, preds[:, m]) for m in range(preds.shape[1])]


def finetune(data: PreparedData, cfg: Config, out_dir: Path, overwrite: bool = False, progress: bool = True) -> dict:
    """Stage 1: fine-tune backbone and all internal classifiers; write a ``finetuned`` checkpoint."""
    seed_everything(cfg.seed)
    task = data.task
    model, tokenizer = MultiExitModel.from_base(cfg.model.name_or_path, task, cfg.model)
    model.to(resolve_device())
    train = encode_split(data.split("train"), tokenizer, model.config.max_length)
    validation = encode_split(data.split("validation"), tokenizer, model.config.max_length)
    opt = cfg.finetune
    if opt.freeze_word_embeddings:
        freeze_word_embeddings(model)
    named = list(model.named_parameters())
    per_epoch, total = total_steps(len(train), opt)
    optimizer, scheduler = make_optimizer(named, opt, total)
    dtype = autocast_dtype(opt.precision, model.device)
    scaler = torch.amp.GradScaler(model.device.type) if dtype == torch.float16 else None
    weights = layer_weights(model.num_layers, opt.layer_weighting)
    generator = torch.Generator().manual_seed(cfg.seed)
    labels_all = torch.tensor(train.labels, device=model.device)
    start = time.perf_counter()
    history, tokens, validation_seconds = [], {"real": 0, "padded": 0}, 0.0
    bar = tqdm(total=total, desc=f"finetune {task.name}", disable=not progress)
    steps = Steps(named, optimizer, scheduler, opt.max_grad_norm, "stage 1 (finetune)", total, bar, "loss", scaler)
    for epoch in range(math.ceil(total / per_epoch)):
        model.train()
        for rows in training_batches(train, opt, generator):
            batch = collate(tokenizer, [train.features[i] for i in rows], model.device)
            tokens["real"] += int(batch["attention_mask"].sum())
            tokens["padded"] += batch["attention_mask"].numel()
            with torch.autocast(model.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                logits, _ = model(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
            labels = labels_all[torch.from_numpy(rows).to(model.device)]
            loss, per_layer = _ic_loss(logits.float(), labels, weights, steps.step)
            if steps.take(loss, per_layer):
                break
        validation_start = time.perf_counter()
        preds, _ = forward_split(model, tokenizer, validation, opt.eval_batch_size)
        layer_metrics = _per_layer_metrics(task, validation.labels, preds)
        validation_seconds += time.perf_counter() - validation_start
        history.append({"epoch": epoch + 1, "step": steps.step, "loss": loss.item(), "validation": layer_metrics})
        log.info("epoch %d: validation %s per layer %s", epoch + 1, task.metrics[0],
                 [round(m[task.metrics[0]], 4) for m in layer_metrics])
    bar.close()
    summary = {
        "stage": "finetune",
        "task": task.name,
        "seed": cfg.seed,
        "steps": steps.step,
        "train_samples": len(train),
        "seconds": time.perf_counter() - start,
        "validation_seconds": validation_seconds,  # of "seconds": the per-epoch validation passes
        "precision": str(dtype).removeprefix("torch.") if dtype else "float32",
        "padding_fraction": 1 - tokens["real"] / max(tokens["padded"], 1),
        "epochs": history,
        "curve": steps.curve,
    }
    model.config.history.append({"stage": "finetune", "config": cfg.finetune.model_dump(), "seed": cfg.seed,
                                 "steps": steps.step})
    _save(model, tokenizer, summary, out_dir, overwrite)
    return summary


def train_prototypes(
    data: PreparedData, cfg: Config, model_dir: Path, out_dir: Path, overwrite: bool = False, progress: bool = True
) -> dict:
    """Stage 2: train the prototypical networks with DAR; write a ``prototyped`` checkpoint."""
    model, tokenizer = load_checkpoint(model_dir, require_stage="finetuned")
    if model.config.task != data.task.name:
        raise De3Error(f"{model_dir} was trained on {model.config.task}, but the data is {data.task.name}")
    seed_everything(cfg.seed)
    model.to(resolve_device())
    task, opt = data.task, cfg.prototypes
    n_proto = model.num_layers - 1
    train = encode_split(data.split("train"), tokenizer, model.config.max_length)
    validation = encode_split(data.split("validation"), tokenizer, model.config.max_length)
    labels_all = torch.tensor(train.labels, device=model.device)
    start = time.perf_counter()
    if opt.freeze_backbone:
        for param in model.parameters():
            param.requires_grad_(False)
        # Frozen backbone and ICs: u is fixed, so compute it once (dropout off) and cache it.
        _, cached = forward_split(model, tokenizer, train, opt.eval_batch_size, progress)
        cached = cached[:, :n_proto]
        _, validation_pooled = forward_split(model, tokenizer, validation, opt.eval_batch_size)
    trainable = [(n, p) for n, p in model.named_parameters() if n.startswith("prototype_nets.") or not opt.freeze_backbone]
    for _, param in trainable:
        param.requires_grad_(True)
    per_epoch, total = total_steps(len(train), opt)
    optimizer, scheduler = make_optimizer(trainable, opt, total)
    weights = layer_weights(model.num_layers, cfg.finetune.layer_weighting)
    generator = torch.Generator().manual_seed(cfg.seed)
    history = []
    bar = tqdm(total=total, desc=f"prototypes {task.name}", disable=not progress)
    steps = Steps(trainable, optimizer, scheduler, opt.max_grad_norm, "stage 2 (prototypes)", total, bar, "dar")
    for epoch in range(math.ceil(total / per_epoch)):
        model.train(not opt.freeze_backbone)
        for rows in shuffled_batches(len(train), opt.batch_size, generator):
            labels = labels_all[torch.from_numpy(rows).to(model.device)]
            ic_loss = torch.zeros((), device=model.device)
            if opt.freeze_backbone:
                u = cached[torch.from_numpy(rows)].transpose(0, 1).to(model.device)  # (M-1, B, H)
            else:
                batch = collate(tokenizer, [train.features[i] for i in rows], model.device)
                logits, u = model(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
                ic_loss = _ic_loss(logits, labels, weights, steps.step)[0]
            z = torch.stack([model.embed_prototype_space(m, u[m]) for m in range(n_proto)])
            model.update_prototypes(z, labels, opt.ema_gamma)
            dar = torch.stack([dar_loss(model.distances(m, z[m]), labels, opt.loss, opt.margin) for m in range(n_proto)])
            stop_unless_finite(dar, "the DAR loss", "stage 2 (prototypes)", steps.step)
            if steps.take(ic_loss + dar.mean(), dar, shown=dar.mean()):
                break
        if not opt.freeze_backbone:
            _, validation_pooled = forward_split(model, tokenizer, validation, opt.eval_batch_size)
        nearest = _nearest_prototype_metrics(model, validation_pooled, validation.labels, task)
        history.append({"epoch": epoch + 1, "step": steps.step, "dar": dar.mean().item(), "validation_nearest": nearest})
    bar.close()
    controls = None
    if opt.controls:
        controls, control_history = _train_controls(model, cached, labels_all, opt, cfg.seed, validation_pooled,
                                                    validation.labels, task, progress)
        history[-1]["validation_control"] = control_history
    model.eval()
    for param in model.parameters():
        param.requires_grad_(True)
    model.config.stage = "prototyped"
    model.config.history.append({"stage": "prototypes", "config": opt.model_dump(), "seed": cfg.seed, "steps": steps.step})
    summary = {
        "stage": "prototypes",
        "task": task.name,
        "seed": cfg.seed,
        "steps": steps.step,
        "train_samples": len(train),
        "seconds": time.perf_counter() - start,
        "epochs": history,
        "curve": steps.curve,
    }
    _save(model, tokenizer, summary, out_dir, overwrite, controls)
    return summary


def _train_controls(model, cached, labels_all, opt, seed, validation_pooled, validation_labels, task, progress):
    """The study's controls (de3pipe/method/controls.py) on the cached stage-2 features, with the same
    optimiser settings, step count and batch order as the prototypical networks."""
    n_proto = model.num_layers - 1
    controls = StudyControls(n_proto, model.config.hidden_size, model.config.prototype_dim, model.config.num_labels)
    controls.to(model.device)
    controls.set_class_means(cached.to(model.device), labels_all)
    per_epoch, total = total_steps(len(cached), opt)
    params = list(controls.named_parameters())
    optimizer, scheduler = make_optimizer(params, opt, total)
    generator = torch.Generator().manual_seed(seed)
    steps = Steps(params, optimizer, scheduler, opt.max_grad_norm, "stage 2 (control heads)", total)
    controls.train()
    for _ in tqdm(range(math.ceil(total / per_epoch)), desc="control heads", disable=not progress):
        for rows in shuffled_batches(len(cached), opt.batch_size, generator):
            index = torch.from_numpy(rows)
            u = cached[index].transpose(0, 1).to(model.device)  # (M-1, B, H)
            labels = labels_all[index.to(model.device)]
            loss = torch.stack([nn.functional.cross_entropy(controls.heads[m](u[m]), labels) for m in range(n_proto)])
            stop_unless_finite(loss, "the control head's loss", "stage 2 (control heads)", steps.step)
            if steps.take(loss.mean()):
                break
    controls.eval()
    with torch.inference_mode():
        u = validation_pooled[:, :n_proto].to(model.device)
        history = [
            task_metrics(task, validation_labels, controls.heads[m](u[:, m]).argmax(-1).cpu().numpy())
            for m in range(n_proto)
        ]
    return controls, history


@torch.inference_mode()
def _nearest_prototype_metrics(model, pooled: torch.Tensor, labels: np.ndarray, task) -> list[dict[str, float]]:
    """Per layer: the task metric of predicting the nearest prototype's class (how well DAR separates)."""
    metrics = []
    for m in range(model.num_layers - 1):
        u = pooled[:, m].to(model.device)
        nearest = model.distances(m, model.embed_prototype_space(m, u)).argmin(-1).cpu().numpy()
        metrics.append(task_metrics(task, labels, nearest))
    return metrics


def _save(model: MultiExitModel, tokenizer, summary: dict, out_dir: Path, overwrite: bool, controls=None) -> None:
    """The checkpoint folder (the training record is the stage's own output, beside it)."""
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp, tokenizer)
        if controls is not None:
            controls.save(tmp, {"steps": summary["steps"], "seed": summary["seed"]})
