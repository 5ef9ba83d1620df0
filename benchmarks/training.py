"""Training and pipeline cost.

1. Stage-1 training options, each a real `finetune` run of one task with its recipe from the
   config, on the same prepared data and seed: throughput (training samples per second, the
   per-epoch validation passes excluded), padding and the validation metric of the last exit,
   for fp32 with uniformly shuffled batches (the former default) and each option added in turn.
2. Plain Hugging Face fine-tuning of the same backbone as the reference: AutoModelForSequence-
   Classification, fp32, uniformly shuffled batches, the same data, epochs, optimiser and schedule;
   throughput and validation metric. Ratio = the config's stage-1 throughput / this (goal >= 1.3
   at equal validation metric).
3. Stage-2 (prototypes) time against stage-1 time, and each recipe's trade-off (the last exit's
   validation metric after each epoch against the minutes of training so far), from the finished
   runs' training records (train_metrics/finetuned.json, prototyped.json).
4. No-op cost of a finished pipeline: `snakemake -n all` and `dvc status` (goal <= 5 s each).

Writes benchmarks/results/training.json and prints the figures.

    python benchmarks/training.py [--task sst2 --task cola] [--max-train-samples 2000] [--config config/config.yaml]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from machine import describe_machine

RESULTS = Path(__file__).parent / "results"

# Each row adds one option to the one before; the first is the former default.
OPTIONS = {
    "fp32, shuffled batches": {"precision": "fp32", "group_by_length": False, "freeze_word_embeddings": False},
    "+ bf16 autocast": {"precision": "bf16", "group_by_length": False, "freeze_word_embeddings": False},
    "+ length-grouped batches": {"precision": "bf16", "group_by_length": True, "freeze_word_embeddings": False},
    "+ frozen word embeddings": {"precision": "bf16", "group_by_length": True, "freeze_word_embeddings": True},
}


def _task_config(config: Path, task_name: str, finetune: dict | None = None, max_train_samples: int | None = None):
    from de3pipe.config import load_config

    cfg = load_config(config, []).for_task(task_name)
    if max_train_samples:
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"max_train_samples": max_train_samples})})
    if finetune:
        cfg = cfg.model_copy(update={"finetune": cfg.finetune.model_copy(update=finetune)})
    return cfg


def finetune_run(data, cfg, out: Path) -> dict:
    """One stage-1 run: samples/s over the training steps, padding, validation metric of the last exit."""
    from de3pipe.modeling.training import finetune

    summary = finetune(data, cfg, out, overwrite=True, progress=False)
    samples = min(summary["steps"] * cfg.finetune.batch_size, math.ceil(cfg.finetune.epochs * summary["train_samples"]))
    metric = data.task.metrics[0]
    return {
        "samples_per_second": samples / (summary["seconds"] - summary["validation_seconds"]),
        "train_seconds": summary["seconds"] - summary["validation_seconds"],
        "padding_fraction": summary["padding_fraction"],
        "precision": summary["precision"],
        "validation_metric": summary["epochs"][-1]["validation"][-1][metric],
    }


def hf_finetune_run(data, cfg) -> dict:
    """Plain Hugging Face fine-tuning of the same backbone: fp32, uniformly shuffled batches."""
    from transformers import AutoModelForSequenceClassification

    from de3pipe.modeling.batching import collate, encode_split
    from de3pipe.method.metrics import task_metrics
    from de3pipe.modeling.backbone import load_tokenizer, resolve_model_path
    from de3pipe.modeling.training import make_optimizer, optimizer_step, shuffled_batches, total_steps, seed_everything

    seed_everything(cfg.seed)
    path = resolve_model_path(cfg.model.name_or_path)
    tokenizer = load_tokenizer(path)
    train = encode_split(data.split("train"), tokenizer, cfg.model.max_length)
    validation = encode_split(data.split("validation"), tokenizer, cfg.model.max_length)
    model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=data.task.num_labels)
    opt = cfg.finetune
    per_epoch, total = total_steps(len(train), opt)
    named = list(model.named_parameters())
    optimizer, scheduler = make_optimizer(named, opt, total)
    generator = torch.Generator().manual_seed(cfg.seed)
    step, samples, start = 0, 0, time.perf_counter()
    model.train()
    for _ in range(math.ceil(total / per_epoch)):
        for rows in shuffled_batches(len(train), opt.batch_size, generator):
            batch = collate(tokenizer, [train.features[i] for i in rows])
            loss = model(**batch, labels=torch.tensor(train.labels[rows])).loss
            optimizer_step(loss, named, optimizer, scheduler, opt.max_grad_norm, "plain", step)
            step, samples = step + 1, samples + len(rows)
            if step >= total:
                break
    seconds = time.perf_counter() - start
    model.eval()
    predictions = []
    with torch.inference_mode():
        for begin in range(0, len(validation), opt.eval_batch_size):
            batch = collate(tokenizer, validation.features[begin : begin + opt.eval_batch_size])
            predictions.append(model(**batch).logits.argmax(-1))
    metric = data.task.metrics[0]
    return {
        "samples_per_second": samples / seconds,
        "train_seconds": seconds,
        "validation_metric": task_metrics(data.task, validation.labels, torch.cat(predictions).numpy())[metric],
    }


def training_options(task_name: str, config: Path, max_train_samples: int | None) -> dict:
    from de3pipe.data.prepare import PreparedData, prepare_task

    cfg = _task_config(config, task_name, max_train_samples=max_train_samples)
    with tempfile.TemporaryDirectory() as tmp:
        prepare_task(task_name, cfg.data, cfg.seed, Path(tmp) / "prepared")
        data = PreparedData.open(Path(tmp) / "prepared")
        rows = {}
        for label, options in OPTIONS.items():
            rows[label] = finetune_run(data, _task_config(config, task_name, options, max_train_samples),
                                       Path(tmp) / "finetuned")
            print(f"  {label}: {rows[label]['samples_per_second']:.1f} samples/s, padding "
                  f"{rows[label]['padding_fraction']:.0%}, validation {data.task.metrics[0]} "
                  f"{rows[label]['validation_metric']:.4f}", flush=True)
        chosen = {k: getattr(cfg.finetune, k) for k in OPTIONS["fp32, shuffled batches"]}
        default = next((label for label, options in OPTIONS.items() if options == chosen), None)
        if default is None:
            rows["config"] = finetune_run(data, cfg, Path(tmp) / "finetuned")
            default = "config"
        hf = hf_finetune_run(data, cfg)
    print(f"  Hugging Face fp32: {hf['samples_per_second']:.1f} samples/s, validation {hf['validation_metric']:.4f}")
    return {
        "task": task_name,
        "train_samples": data.info["splits"]["train"]["rows"],
        "epochs": cfg.finetune.epochs,
        "batch_size": cfg.finetune.batch_size,
        "max_length": cfg.model.max_length,
        "metric": data.task.metrics[0],
        "options": rows,
        "config_default": default,
        "hugging_face": hf,
        "ratio": rows[default]["samples_per_second"] / hf["samples_per_second"],
    }


def stage_times(results: Path) -> list[dict]:
    rows = []
    from de3pipe.infra.layout import RunLayout

    for folder in sorted(results.glob("*/seed*")):
        run = RunLayout(folder)
        files = [run.finetune_metrics, run.prototypes_metrics]
        if all(f.is_file() for f in files):
            stage1, stage2 = (json.loads(f.read_text()) for f in files)
            rows.append({"run": str(folder), "stage1_seconds": stage1["seconds"], "stage2_seconds": stage2["seconds"],
                         "ratio": stage2["seconds"] / stage1["seconds"], "tradeoff": _tradeoff(stage1)})
    return rows


def _tradeoff(stage1: dict) -> list[dict]:
    """Per epoch: minutes of stage 1 so far (steps pro rata of the run's time) and the validation
    metrics of the last exit then."""
    return [{"epoch": epoch["epoch"], "minutes": stage1["seconds"] * epoch["step"] / stage1["steps"] / 60,
             **epoch["validation"][-1]} for epoch in stage1["epochs"]]


def noop_cost(repeats: int = 3) -> dict:
    def best(command: list[str]) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            times.append(time.perf_counter() - start)
        return min(times)

    return {"snakemake_dry_run_seconds": best(["snakemake", "-n", "all"]), "dvc_status_seconds": best(["dvc", "status"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", action="append", help="task(s) of the options table (default: sst2 and cola)")
    parser.add_argument("--max-train-samples", type=int, default=2000,
                        help="cap on each task's train split for the options table (0: the recipe's own)")
    parser.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    parser.add_argument("--results", type=Path, default=Path("data"), help="results folder whose stage times to compare")
    args = parser.parse_args()
    throughput = []
    for task in args.task or ["sst2", "cola"]:
        print(f"stage-1 training options, {task}:", flush=True)
        throughput.append(training_options(task, args.config, args.max_train_samples or None))
        print(f"  ratio to Hugging Face: {throughput[-1]['ratio']:.2f}")
    stages = stage_times(args.results)
    for row in stages:
        print(f"{row['run']}: stage 2 {row['stage2_seconds']:.0f} s / stage 1 {row['stage1_seconds']:.0f} s = {row['ratio']:.2f}; "
              "per epoch (minutes: validation): "
              + ", ".join(f"{e['minutes']:.1f}: " + "/".join(f"{v:.3f}" for k, v in e.items() if k not in ("epoch", "minutes"))
                          for e in row["tradeoff"]))
    noop = noop_cost()
    print(f"no-op: snakemake -n all {noop['snakemake_dry_run_seconds']:.1f} s, dvc status {noop['dvc_status_seconds']:.1f} s")
    RESULTS.mkdir(exist_ok=True)
    result = {"machine": describe_machine(), "config": str(args.config), "throughput": throughput,
              "results": str(args.results), "stages": stages, "noop": noop,
              "median_stage_ratio": statistics.median(r["ratio"] for r in stages) if stages else None}
    (RESULTS / "training.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / 'training.json'}")


if __name__ == "__main__":
    sys.exit(main())
