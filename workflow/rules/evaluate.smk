# Generated from the stage table (de3pipe/infra/workflow.py) by `de3pipe rules`; do not edit by hand.
# Stage 6: apply the frozen thresholds to the test split; wall-clock speed-up of batched early exit.
rule evaluate:
    input:
        signals=f"{RESULTS}/{{task}}/seed{{seed}}/signals",
        thresholds=f"{RESULTS}/{{task}}/seed{{seed}}/calibration/thresholds.json",
        data=f"{RESULTS}/{{task}}/seed{{seed}}/prepared",
        model=f"{RESULTS}/{{task}}/seed{{seed}}/prototyped",
        code=[
            "de3pipe/__init__.py",
            "de3pipe/config.py",
            "de3pipe/data/__init__.py",
            "de3pipe/data/glue_dir.py",
            "de3pipe/data/hub.py",
            "de3pipe/data/own.py",
            "de3pipe/data/prepare.py",
            "de3pipe/data/tasks.py",
            "de3pipe/errors.py",
            "de3pipe/inference/__init__.py",
            "de3pipe/inference/engine.py",
            "de3pipe/inference/overhead.py",
            "de3pipe/inference/wallclock.py",
            "de3pipe/infra/__init__.py",
            "de3pipe/infra/io.py",
            "de3pipe/infra/layout.py",
            "de3pipe/method/__init__.py",
            "de3pipe/method/curves.py",
            "de3pipe/method/evaluation.py",
            "de3pipe/method/guarantee.py",
            "de3pipe/method/metrics.py",
            "de3pipe/method/operating_points.py",
            "de3pipe/method/signals.py",
            "de3pipe/method/strategies.py",
            "de3pipe/modeling/__init__.py",
            "de3pipe/modeling/backbone.py",
            "de3pipe/modeling/batching.py",
            "de3pipe/modeling/families.py",
            "de3pipe/modeling/multi_exit.py",
            "de3pipe/stages/evaluate.py",
        ],
    output:
        metrics=f"{RESULTS}/{{task}}/seed{{seed}}/evaluation/metrics.json",
        curves=f"{RESULTS}/{{task}}/seed{{seed}}/evaluation/test_curves.csv",
        exits=f"{RESULTS}/{{task}}/seed{{seed}}/evaluation/exits.parquet",
        points=f"{RESULTS}/{{task}}/seed{{seed}}/evaluation/points.npz",
        submission=directory(f"{RESULTS}/{{task}}/seed{{seed}}/evaluation/submission"),
        headline=directory(f"{RESULTS}/{{task}}/seed{{seed}}/evaluation/headline"),
    params:
        config=CONFIG_ARGS,  # the config files the workflow read: the job reads exactly these
        evaluation=setting("evaluation"),
        calibration=setting("calibration"),
    log:
        f"{LOGS}/evaluate/{{task}}.seed{{seed}}.log",
    benchmark:
        f"{LOGS}/benchmarks/evaluate/{{task}}.seed{{seed}}.tsv"
    conda:
        "../envs/de3pipe.yaml"
    threads: TORCH_THREADS
    resources:
        **torch_resources(
            mem_mb=4000,
            runtime=30,
        ),
    shell:
        "OMP_NUM_THREADS=${{SLURM_CPUS_PER_TASK:-{threads}}} de3pipe evaluate --signals {input.signals} --thresholds {input.thresholds} --data {input.data} --model {input.model} --seed {wildcards.seed} --out $(dirname {output.metrics}) {params.config} --overwrite --quiet > {log} 2>&1"
