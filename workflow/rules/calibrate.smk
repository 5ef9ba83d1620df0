# Generated from the stage table (de3pipe/infra/workflow.py) by `de3pipe rules`; do not edit by hand.
# Stage 5: sweep every strategy on the validation split and freeze one operating point per target.
rule calibrate:
    input:
        signals=f"{RESULTS}/{{task}}/seed{{seed}}/signals",
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
            "de3pipe/method/calibration.py",
            "de3pipe/method/guarantee.py",
            "de3pipe/method/metrics.py",
            "de3pipe/method/operating_points.py",
            "de3pipe/method/signals.py",
            "de3pipe/method/strategies.py",
            "de3pipe/stages/calibrate.py",
        ],
    output:
        thresholds=f"{RESULTS}/{{task}}/seed{{seed}}/calibration/thresholds.json",
        curves=f"{RESULTS}/{{task}}/seed{{seed}}/calibration/curves.csv",
    params:
        config=CONFIG_ARGS,  # the config files the workflow read: the job reads exactly these
        calibration=setting("calibration"),
        signals_eps=setting("signals.eps"),
    log:
        f"{LOGS}/calibrate/{{task}}.seed{{seed}}.log",
    benchmark:
        f"{LOGS}/benchmarks/calibrate/{{task}}.seed{{seed}}.tsv"
    conda:
        "../envs/de3pipe.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "OMP_NUM_THREADS=${{SLURM_CPUS_PER_TASK:-{threads}}} de3pipe calibrate --signals {input.signals} --seed {wildcards.seed} --out $(dirname {output.thresholds}) {params.config} --overwrite --quiet > {log} 2>&1"
