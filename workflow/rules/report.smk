# Generated from the stage table (de3pipe/infra/workflow.py) by `de3pipe rules`; do not edit by hand.
# Stage 7: strategies compared at matched speed-ups on calibrated curves (bootstrap intervals), and the plots.
rule report:
    input:
        evaluations=expand(f"{RESULTS}/{{task}}/seed{{seed}}/evaluation/metrics.json", task=TASKS, seed=SEEDS),
        curves=expand(f"{RESULTS}/{{task}}/seed{{seed}}/evaluation/test_curves.csv", task=TASKS, seed=SEEDS),
        points=expand(f"{RESULTS}/{{task}}/seed{{seed}}/evaluation/points.npz", task=TASKS, seed=SEEDS),
        finetune_metrics=expand(f"{RESULTS}/{{task}}/seed{{seed}}/train_metrics/finetuned.json", task=TASKS, seed=SEEDS),
        prototypes_metrics=expand(f"{RESULTS}/{{task}}/seed{{seed}}/train_metrics/prototyped.json", task=TASKS, seed=SEEDS),
        signals=expand(f"{RESULTS}/{{task}}/seed{{seed}}/signals", task=TASKS, seed=SEEDS),
        code=[
            "de3pipe/__init__.py",
            "de3pipe/config.py",
            "de3pipe/data/__init__.py",
            "de3pipe/data/tasks.py",
            "de3pipe/errors.py",
            "de3pipe/infra/__init__.py",
            "de3pipe/infra/io.py",
            "de3pipe/infra/layout.py",
            "de3pipe/method/__init__.py",
            "de3pipe/method/curves.py",
            "de3pipe/method/guarantee.py",
            "de3pipe/method/metrics.py",
            "de3pipe/method/operating_points.py",
            "de3pipe/method/signals.py",
            "de3pipe/method/strategies.py",
            "de3pipe/report/__init__.py",
            "de3pipe/report/collect.py",
            "de3pipe/report/comparison.py",
            "de3pipe/report/findings.py",
            "de3pipe/report/page.py",
            "de3pipe/report/per_class.py",
            "de3pipe/report/plots.py",
            "de3pipe/report/tables.py",
            "de3pipe/stages/report.py",
        ],
    output:
        page=f"{RESULTS}/report/report.md",
        summary=f"{RESULTS}/report/summary.json",
        plots=directory(f"{RESULTS}/report/plots"),
    params:
        config=CONFIG_ARGS,  # the config files the workflow read: the job reads exactly these
        report=setting("report"),
    log:
        f"{LOGS}/report.log",
    conda:
        "../envs/de3pipe.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "OMP_NUM_THREADS=${{SLURM_CPUS_PER_TASK:-{threads}}} de3pipe report --out $(dirname {output.page}) {input.evaluations} {params.config} --overwrite > {log} 2>&1"
