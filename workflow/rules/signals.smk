# Generated from the stage table (de3pipe/infra/workflow.py) by `de3pipe rules`; do not edit by hand.
# Stage 4: one forward pass per split storing every layer's exit signals.
rule signals:
    input:
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
            "de3pipe/infra/__init__.py",
            "de3pipe/infra/io.py",
            "de3pipe/infra/layout.py",
            "de3pipe/method/__init__.py",
            "de3pipe/method/controls.py",
            "de3pipe/method/metrics.py",
            "de3pipe/method/projection.py",
            "de3pipe/method/signals.py",
            "de3pipe/modeling/__init__.py",
            "de3pipe/modeling/backbone.py",
            "de3pipe/modeling/batching.py",
            "de3pipe/modeling/families.py",
            "de3pipe/modeling/multi_exit.py",
            "de3pipe/stages/signals.py",
        ],
    output:
        signals=directory(f"{RESULTS}/{{task}}/seed{{seed}}/signals"),
    params:
        config=CONFIG_ARGS,  # the config files the workflow read: the job reads exactly these
        signals=setting("signals"),
    log:
        f"{LOGS}/signals/{{task}}.seed{{seed}}.log",
    benchmark:
        f"{LOGS}/benchmarks/signals/{{task}}.seed{{seed}}.tsv"
    conda:
        "../envs/de3pipe.yaml"
    threads: TORCH_THREADS
    resources:
        **torch_resources(
            mem_mb=lambda wildcards, attempt: 8000 * attempt,
            runtime=lambda wildcards, attempt: 240 * attempt,
        ),
    shell:
        "OMP_NUM_THREADS=${{SLURM_CPUS_PER_TASK:-{threads}}} de3pipe signals --data {input.data} --model {input.model} --seed {wildcards.seed} --out {output.signals} {params.config} --overwrite --quiet > {log} 2>&1"
