# Generated from the stage table (de3pipe/infra/workflow.py) by `de3pipe rules`; do not edit by hand.
# Stage 2: the method's stage 1: fine-tune the backbone and one internal classifier per layer.
rule finetune:
    input:
        data=f"{RESULTS}/{{task}}/seed{{seed}}/prepared",
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
            "de3pipe/infra/__init__.py",
            "de3pipe/infra/io.py",
            "de3pipe/infra/layout.py",
            "de3pipe/method/__init__.py",
            "de3pipe/method/controls.py",
            "de3pipe/method/metrics.py",
            "de3pipe/method/signals.py",
            "de3pipe/modeling/__init__.py",
            "de3pipe/modeling/backbone.py",
            "de3pipe/modeling/batching.py",
            "de3pipe/modeling/families.py",
            "de3pipe/modeling/multi_exit.py",
            "de3pipe/modeling/training.py",
            "de3pipe/stages/finetune.py",
        ],
    output:
        model=directory(f"{RESULTS}/{{task}}/seed{{seed}}/finetuned"),
        train_metrics=f"{RESULTS}/{{task}}/seed{{seed}}/train_metrics/finetuned.json",
    params:
        config=CONFIG_ARGS,  # the config files the workflow read: the job reads exactly these
        model=setting("model"),
        finetune=setting("finetune"),
    log:
        f"{LOGS}/finetune/{{task}}.seed{{seed}}.log",
    benchmark:
        f"{LOGS}/benchmarks/finetune/{{task}}.seed{{seed}}.tsv"
    conda:
        "../envs/de3pipe.yaml"
    threads: TORCH_THREADS
    resources:
        **torch_resources(
            mem_mb=lambda wildcards, attempt: 8000 * attempt,
            runtime=lambda wildcards, attempt: 240 * attempt,
        ),
    shell:
        "OMP_NUM_THREADS=${{SLURM_CPUS_PER_TASK:-{threads}}} de3pipe finetune --data {input.data} --seed {wildcards.seed} --out {output.model} --train-metrics {output.train_metrics} {params.config} --overwrite --quiet > {log} 2>&1"
