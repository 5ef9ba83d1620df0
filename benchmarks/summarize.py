"""Write BENCHMARKS.md from benchmarks/results/*.json (the figures of inference.py, training.py,
serving.py and reruns.py)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
OUT = Path(__file__).parents[1] / "BENCHMARKS.md"


def _machine(machine: dict) -> str:
    return (f"{machine['cpu']}, {machine['cores']} cores ({machine['torch_threads']} torch threads), "
            f"device {machine['device']}, torch {machine['torch']}, Python {machine['python']}")


def inference_section(result: dict) -> list[str]:
    rows = result["rows"]
    subset = f"a seeded subset of {result['max_samples']} test samples" if result["max_samples"] else "the whole test split"
    lines = [
        "## Inference: batched early exit against the full model",
        "",
        f"Machine: {_machine(result['machine'])}. Models: the runs under `{result.get('results', 'data')}/` "
        f"(seed {', '.join(sorted({str(r['seed']) for r in rows}))}). Each task's test split ({subset}), fastest of "
        f"{result['repeats']} timed runs after a warm-up, the same batches for both. Layer speed-up = "
        "layers a full pass runs / layers early exit runs; ratio = wall-clock / layer speed-up (goal ≥ 0.9 at batch 32).",
        "",
        "| task | strategy | target | batch | layer speed-up | wall-clock speed-up | ratio | samples/s | full model samples/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in sorted(rows, key=lambda r: (r["task"], r["seed"], r["strategy_name"], float(r["target"]), r["batch_size"])):
        lines.append(
            f"| {row['task']} | {row['strategy_name']} | {row['target']}× | {row['batch_size']} | "
            f"{row['layer_speedup']:.2f}× | {row['wallclock_speedup']:.2f}× | {row['ratio']:.2f} | "
            f"{row['samples_per_second']:.0f} | {row['full_samples_per_second']:.0f} |"
        )
    ratios = defaultdict(list)
    for row in rows:
        ratios[row["batch_size"]].append(row["ratio"])
    lines += ["", "Mean wall-clock/layer ratio per batch size: "
              + ", ".join(f"batch {b}: {sum(v) / len(v):.2f}" for b, v in sorted(ratios.items())) + "."]
    latency = [r for r in rows if r["batch_size"] == 1]
    if latency:
        lines += ["", "Batch-1 latency (ms per sample, as DeeBERT/PABEE report it):", "",
                  "| task | strategy | target | full model | early exit | speed-up |", "|---|---|---|---|---|---|"]
        for row in sorted(latency, key=lambda r: (r["task"], r["strategy_name"], float(r["target"]))):
            lines.append(f"| {row['task']} | {row['strategy_name']} | {row['target']}× | {row['full_latency_ms']:.1f} | "
                         f"{row['latency_ms']:.1f} | {row['full_latency_ms'] / row['latency_ms']:.2f}× |")
    return lines + [""]


def training_section(result: dict) -> list[str]:
    lines = ["## Training and pipeline cost", "", f"Machine: {_machine(result['machine'])}.", "",
             f"Stage-1 training options: a real `finetune` run of each task with its recipe from `{result['config']}` "
             "(the same prepared data and seed for every row; each row adds one option to the row above; samples/s "
             "over the training steps, per-epoch validation excluded; validation = the last exit's metric), and "
             "plain Hugging Face fine-tuning of the same backbone (`AutoModelForSequenceClassification`, fp32, "
             "uniformly shuffled batches, the same data, epochs, optimiser and schedule) as the reference.", ""]
    for t in result["throughput"]:
        lines += [f"**{t['task']}** ({t['train_samples']} training examples, {t['epochs']:g} epochs, batch {t['batch_size']}, "
                  f"max length {t['max_length']}):", "",
                  f"| training | samples/s | × fp32 shuffled | padding | validation {t['metric']} |", "|---|---|---|---|---|"]
        base = next(iter(t["options"].values()))["samples_per_second"]
        for label, row in t["options"].items():
            mark = " (default)" if label == t["config_default"] else ""
            lines.append(f"| {label}{mark} | {row['samples_per_second']:.1f} | {row['samples_per_second'] / base:.2f}× | "
                         f"{row['padding_fraction']:.0%} | {row['validation_metric']:.4f} |")
        hf = t["hugging_face"]
        lines += [f"| Hugging Face, fp32, shuffled | {hf['samples_per_second']:.1f} | {hf['samples_per_second'] / base:.2f}× | "
                  f"– | {hf['validation_metric']:.4f} |", "",
                  f"Default stage-1 training / Hugging Face: **{t['ratio']:.2f}×** throughput (goal ≥ 1.3× at equal "
                  "validation metric).", ""]
    if result["stages"]:
        lines.append(f"- Stage 2 against stage 1 (median over {len(result['stages'])} runs): "
                     f"**{result['median_stage_ratio']:.2f}** of stage-1 time; per run: "
                     + ", ".join(f"{Path(r['run']).parent.name}/{Path(r['run']).name} {r['ratio']:.2f}" for r in result["stages"]) + ".")
        epochs = max(len(r["tradeoff"]) for r in result["stages"])  # recipes differ in epochs per task
        lines += ["", "Recipe trade-off (stage 1 of each run: the last exit's validation metric after each epoch, "
                  "against the minutes of training so far):", "",
                  "| run | " + " | ".join(f"epoch {e + 1}" for e in range(epochs)) + " |", "|---" * (epochs + 1) + "|"]
        for r in result["stages"]:
            cells = [f"{e['minutes']:.1f} min: " + ", ".join(f"{k} {v:.3f}" for k, v in e.items() if k not in ("epoch", "minutes"))
                     for e in r["tradeoff"]]
            lines.append(f"| {Path(r['run']).parent.name}/{Path(r['run']).name} | "
                         + " | ".join(cells + [""] * (epochs - len(cells))) + " |")
        lines.append("")
    n = result["noop"]
    lines.append(f"- No-op on a finished run: `snakemake -n all` {n['snakemake_dry_run_seconds']:.1f} s, "
                 f"`dvc status` {n['dvc_status_seconds']:.1f} s (goal ≤ 5 s each).")
    return lines + [""]


def serving_section(result: dict) -> list[str]:
    lines = ["## Serving limits", "", f"Machine: {_machine(result['machine'])}. `python benchmarks/serving.py` on "
             f"`{result['run']}`: what one request to the served model costs (input checks, tokenisation, batched early "
             "exit at de3's 2× point, batch 32), median of 3 timed repeats after a warm-up. Typical texts are the test "
             "split's; long texts are 10,000 characters each (the tokenizer reads them whole, the model sees its "
             "max length). The served model's limits (`serving.max_texts`, `serving.max_characters`) keep the "
             "largest allowed request to about ten seconds here.", "",
             "| request | texts | characters | seconds |", "|---|---|---|---|"]
    for row in result["rows"]:
        kind = "typical texts" if row["kind"] == "texts" else "long texts"
        lines.append(f"| {kind} | {row['texts']:,} | {row['characters']:,} | {row['seconds']:.2f} |")
    return lines + [""]


def reruns_section(result: dict) -> list[str]:
    lines = ["## Reruns: what makes results machine-dependent", "",
             f"Machine: {_machine(result['machine'])}. `python benchmarks/reruns.py --default`: the tiny config "
             "(config/test.yaml) from scratch in each precision and thread count, every pair's headline figures "
             "(test metric, matched metric and achieved speed-up of every strategy and target, and the full model) "
             "compared; and the default run in `data/` against one committed from another session's machine (its "
             "revision in the row's name; `--against REV`), on the figures both have.", "",
             "| compared | figures that differ | largest metric difference | largest speed-up difference |",
             "|---|---|---|---|"]
    for name, row in result["pairs"].items():
        lines.append(f"| {name} | {row['differing']} of {row['figures']}"
                     + (f" ({row['missing']} missing)" if row["missing"] else "")
                     + f" | {row['max_metric_points']:.2f} points | {row['max_speedup_percent']:.2f}% |")
    return lines + [""]


def guarantee_section(result: dict) -> list[str]:
    lines = [
        "## Guarantee: validity and efficiency on real runs",
        "",
        f"Machine: {_machine(result['machine'])}. `python benchmarks/guarantee.py` on the runs under "
        f"`{result['results']}/`: {result['splits']} random splits per task, recalibrated from the stored signals "
        f"({result['method']}, δ = {result['delta']:g}). *Partitions*: the pooled labeled examples (validation ∪ "
        "test) cut into a calibration part and a test part of today's sizes; a violation is a test part whose risk "
        "exceeds ε (finite test parts add their own noise, and a part's complement is the other part). *iid, true "
        "risk*: a calibration set drawn with replacement from the pooled examples; a violation is a pooled risk (the "
        "population's true risk) above ε — the guarantee's exact statement, which must hold at ≤ δ up to Monte Carlo "
        "error (±3 SE = ±" + f"{3 * (result['delta'] * (1 - result['delta']) / result['splits']) ** 0.5:.3f}). "
        "*Naive*: the fastest setting whose calibration risk is ≤ ε. Efficiency: the median over splits of the "
        "speed-up at the guarantee / the speed-up of the fastest setting whose evaluated risk is ≤ ε. "
        "*+ unlabeled*: the submit split's text joins every calibration set (partitions: as the stage uses it, "
        "evaluated on the labeled test part; iid: pooled with the labeled examples, as if exchangeable).",
        "",
        "| task | strategy | calibration | ε | n | violations | naive | median speed-up | efficiency |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task, entry in result["tasks"].items():
        for name, variants in entry["strategies"].items():
            for variant, by_epsilon in variants.items():
                if variant == "settings":
                    continue
                for epsilon, row in by_epsilon.items():
                    lines.append(f"| {task} | {name} | {variant} | {float(epsilon):.0%} | {row['n']} | "
                                 f"{row['violation_rate']:.3f} | {row['naive_violation_rate']:.3f} | "
                                 f"{row['median_speedup']:.2f}× | {row['median_efficiency']:.2f} |")
    return [*lines, ""]


def seed_coverage_section(result: dict) -> list[str]:
    lines = ["## Seed-aware intervals: coverage in simulated studies", "",
             f"`python benchmarks/seed_coverage.py`: {result['studies']} simulated studies per row of a paired accuracy "
             f"difference (true value {result['true_difference']:g}; 400 test examples shared by every seed; "
             f"{result['replicates']} bootstrap replicates), each seed with its own effect on the difference (sd in "
             "points). *report*: the report's interval (test bootstrap with the seeds fixed + the seeds' standard "
             "error times t on S − 1 df); *beyond-test*: the same with each seed's own test noise taken out of the seed "
             "variance (not counted twice); *old*: the seeds resampled with replacement with the examples (the "
             "protocol before issue 21). Nominal coverage 0.95.", "",
             "| seeds | seed sd (points) | report | beyond-test | old | width: report | beyond-test | old |",
             "|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(f"| {row['seeds']} | {row['seed_sd'] * 100:.1f} | {row['coverage.report']:.3f} | "
                     f"{row['coverage.beyond-test']:.3f} | {row['coverage.old']:.3f} | {row['width.report'] * 100:.1f} | "
                     f"{row['width.beyond-test'] * 100:.1f} | {row['width.old'] * 100:.1f} |")
    return [*lines, ""]


def profile_section(result: dict) -> list[str]:
    parts = ["layers", "exit_heads", "signals", "de3_signal", "exit_rule", "layer_context", "embed", "loop_rest"]
    lines = ["## Where batched early exit spends its time", "",
             f"`make bench-profile` (benchmarks/profile_inference.py): {result['run']}, {result['max_samples']} test "
             f"examples, points calibrated for {result['target']}×; each part timed by wrapping the calls the engine "
             "makes, fastest of the repeats after a warm-up; the full model is `run_full` (every layer, the last head). "
             f"Machine: {_machine(result['machine'])}. Shares of each run's time in %; loop_rest = the engine's own "
             "loop (row compaction, padding trimming, Python).", "",
             "| batch | strategy | ms | layer speed-up | wall-clock speed-up | ratio | " + " | ".join(parts) + " |",
             "|---" * (6 + len(parts)) + "|"]
    full = {row["batch_size"]: row["total_seconds"] for row in result["rows"] if row["strategy"] == "full model"}
    for row in result["rows"]:
        wall = full[row["batch_size"]] / row["total_seconds"]
        lines.append(f"| {row['batch_size']} | {row['strategy']} | {row['total_seconds'] * 1000:.0f} | "
                     f"{row['layer_speedup']:.2f}× | {wall:.2f}× | {wall / row['layer_speedup']:.2f} | "
                     + " | ".join(f"{row['share'].get(p, 0) * 100:.1f}" for p in parts) + " |")
    return [*lines, ""]


def own_data_section(result: dict) -> list[str]:
    gate, metric = result["gate"], result["metric"]
    counts = ", ".join(f"{name} {n}" for name, n in zip(result["classes"], result["counts"]["train"].values(), strict=True))

    def cell(e: dict, signed: bool = False) -> str:
        sign = "+" if signed else ""
        return f"{e['value'] * 100:{sign}.1f} [{e['low'] * 100:{sign}.1f}, {e['high'] * 100:{sign}.1f}]"

    lines = ["## A dataset of your own: STS-B in three classes", "",
             f"`make bench-own-data` (benchmarks/own_data.py): STS-B's similarity scores binned at "
             f"{' and '.join(f'{e:g}' for e in result['edges'])} into {', '.join(result['classes'])} (train: {counts}; "
             f"test: STS-B dev, {sum(result['counts']['test'].values())} pairs), written as CSV files and declared under "
             f"`datasets:`; the default recipe, one seed, the whole workflow in {result['workflow_seconds'] / 60:.0f} "
             f"minutes on {result['cores']} cores. Figures ×100, 95% test-bootstrap intervals ({metric}); p-values "
             "adjusted with Holm within their family, as the report does.", "",
             "| what | value |", "|---|---|",
             f"| full model | {cell(gate['full_model'])} |",
             f"| {gate['trivial_predictor']} | {cell(gate['trivial'])} |",
             f"| full − trivial | {cell(gate['difference'], signed=True)} ({'learned' if gate['learned'] else 'not learned'}) |"]
    for name, by_at in result["de3_minus"].items():
        for at, e in by_at.items():
            p = f", p = {e['p']:.3f}" if "p" in e else ""
            if "p_adjusted" in e:
                p += f" (adjusted {e['p_adjusted']:.3f}, {e.get('family', 'exploratory')})"
            lines.append(f"| de3 − {name} at {at}{'' if at == 'area' else '×'} | {cell(e, signed=True)}{p} |")
    return [*lines, ""]


def main() -> None:
    inference = RESULTS / "inference.json"
    source = json.loads(inference.read_text()).get("results", "data") if inference.is_file() else "data"
    lines = ["# Benchmarks", "",
             "Generated by `make bench` (benchmarks/inference.py, benchmarks/training.py, benchmarks/serving.py, "
             "benchmarks/reruns.py, benchmarks/guarantee.py, benchmarks/seed_coverage.py, then this file's "
             f"generator benchmarks/summarize.py) from the finished pipeline runs under `{source}/`. Raw figures: "
             "`benchmarks/results/*.json`.", ""]
    for name, section in (("inference.json", inference_section), ("training.json", training_section),
                          ("serving.json", serving_section), ("reruns.json", reruns_section),
                          ("guarantee.json", guarantee_section), ("seed_coverage.json", seed_coverage_section),
                          ("own_data.json", own_data_section), ("profile.json", profile_section)):
        path = RESULTS / name
        if path.is_file():
            lines += section(json.loads(path.read_text()))
    if not (RESULTS / "gpu.json").is_file():
        lines += ["## GPU", "",
                  "Not measured: these figures come from a 2-core CPU machine and no GPU was available to the run "
                  "that produced them. On a GPU, run the study (drop SST-2's cap in the recipes) and `make bench`; "
                  "record those figures separately, with the device named.", ""]
    OUT.write_text("\n".join(lines))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
