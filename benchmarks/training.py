"""Training and pipeline cost (issue: benchmarks §3).

1. Stage-1 multi-exit training throughput against plain Hugging Face sequence-classification
   fine-tuning of the same backbone, same batches, same optimiser, in one process (ratio; goal
   >= 0.9).
2. Stage-2 (prototypes) time against stage-1 time, from the finished runs' train_metrics.json.
3. No-op cost of a finished pipeline: `snakemake -n all` and `dvc status` (goal <= 5 s each).

Writes benchmarks/results/training.json and prints the figures.

    python benchmarks/training.py [--task sst2] [--steps 30] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from machine import describe_machine

RESULTS = Path(__file__).parent / "results"


def _batches(task_name: str, batch_size: int, steps: int, max_length: int):
    """The same `steps` training batches for both models, from a prepared run or the GLUE files."""
    from de3pipe.batching import collate, encode_split
    from de3pipe.config import load_config
    from de3pipe.data.prepare import PreparedData, prepare_task
    from de3pipe.modeling.backbone import load_tokenizer, resolve_model_path
    from de3pipe.training import _shuffled_batches

    cfg = load_config(None, [f"model.max_length={max_length}"])
    runs = sorted(Path("data").glob(f"{task_name}/seed*/prepared"))
    if not runs:  # no pipeline run yet: prepare the task once, here
        runs = [RESULTS / f".{task_name}-prepared"]
        if not runs[0].is_dir():
            prepare_task(task_name, cfg.data, 0, runs[0])
    data = PreparedData.open(runs[0])
    path = resolve_model_path(cfg.model.name_or_path)
    tokenizer = load_tokenizer(path)
    encoded = encode_split(data.split("train"), tokenizer, max_length)
    epoch = list(_shuffled_batches(len(encoded), batch_size, torch.Generator().manual_seed(0)))
    batches = []
    for rows in itertools.islice(itertools.cycle(epoch), steps):  # stage 1's own batch order
        batch = collate(tokenizer, [encoded.features[i] for i in rows], "cpu")
        batches.append((batch, torch.tensor(encoded.labels[rows])))
    return data.task, cfg, path, batches


def _time_steps(step_fn, batches, warmup: int = 3) -> float:
    """Samples per second over the batches after `warmup` untimed steps."""
    for batch, labels in batches[:warmup]:
        step_fn(batch, labels)
    start = time.perf_counter()
    for batch, labels in batches[warmup:]:
        step_fn(batch, labels)
    seconds = time.perf_counter() - start
    return sum(len(labels) for _, labels in batches[warmup:]) / seconds


def training_throughput(task_name: str, steps: int, batch_size: int, max_length: int) -> dict:
    from transformers import AutoModelForSequenceClassification

    from de3pipe.modeling import MultiExitModel
    from de3pipe.training import _ic_loss, _optimizer, _optimizer_step, layer_weights

    task, cfg, path, batches = _batches(task_name, batch_size, steps, max_length)
    torch.manual_seed(0)
    multi, _ = MultiExitModel.from_base(str(path), task, cfg.model)
    multi.train()
    optimizer, scheduler = _optimizer(list(multi.named_parameters()), cfg.finetune, steps)
    weights = layer_weights(multi.num_layers, cfg.finetune.layer_weighting)

    def multi_step(batch, labels):
        logits, _ = multi(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
        _optimizer_step(_ic_loss(logits, labels, weights, 0)[0], list(multi.named_parameters()), optimizer, scheduler, 1.0,
                        "multi-exit", 0)

    plain = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=task.num_labels)
    plain.train()
    plain_optimizer, plain_scheduler = _optimizer(list(plain.named_parameters()), cfg.finetune, steps)

    def plain_step(batch, labels):
        loss = plain(**batch, labels=labels).loss
        _optimizer_step(loss, list(plain.named_parameters()), plain_optimizer, plain_scheduler, 1.0, "plain", 0)

    # Interleave the two a few times so neither profits from a quieter moment of the machine.
    multi_rates, plain_rates = [], []
    for _ in range(2):
        multi_rates.append(_time_steps(multi_step, batches))
        plain_rates.append(_time_steps(plain_step, batches))
    multi_rate, plain_rate = max(multi_rates), max(plain_rates)
    return {
        "task": task_name,
        "batch_size": batch_size,
        "max_length": max_length,
        "timed_steps": steps - 3,
        "multi_exit_samples_per_second": multi_rate,
        "hf_sequence_classification_samples_per_second": plain_rate,
        "ratio": multi_rate / plain_rate,
    }


def stage_times(results: Path) -> list[dict]:
    rows = []
    for run in sorted(results.glob("*/seed*")):
        files = [run / stage / "train_metrics.json" for stage in ("finetuned", "prototyped")]
        if all(f.is_file() for f in files):
            stage1, stage2 = (json.loads(f.read_text())["seconds"] for f in files)
            rows.append({"run": str(run), "stage1_seconds": stage1, "stage2_seconds": stage2, "ratio": stage2 / stage1})
    return rows


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
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--results", type=Path, default=Path("data"), help="results folder whose stage times to compare")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()
    throughput = training_throughput(args.task, args.steps, args.batch_size, args.max_length)
    print(f"stage-1 multi-exit training: {throughput['multi_exit_samples_per_second']:.1f} samples/s; "
          f"HF sequence classification: {throughput['hf_sequence_classification_samples_per_second']:.1f} samples/s; "
          f"ratio {throughput['ratio']:.2f}")
    stages = stage_times(args.results)
    for row in stages:
        print(f"{row['run']}: stage 2 {row['stage2_seconds']:.0f} s / stage 1 {row['stage1_seconds']:.0f} s = {row['ratio']:.2f}")
    noop = noop_cost()
    print(f"no-op: snakemake -n all {noop['snakemake_dry_run_seconds']:.1f} s, dvc status {noop['dvc_status_seconds']:.1f} s")
    RESULTS.mkdir(exist_ok=True)
    result = {"machine": describe_machine(), "throughput": throughput, "results": str(args.results),
              "stages": stages, "noop": noop,
              "median_stage_ratio": statistics.median(r["ratio"] for r in stages) if stages else None}
    (RESULTS / "training.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / 'training.json'}")


if __name__ == "__main__":
    sys.exit(main())
