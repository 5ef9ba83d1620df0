# Generated from the stage table (de3pipe/infra/workflow.py) by `de3pipe rules`; do not edit by hand.
# Stage 1: read the task (GLUE folder or hub) and carve the seeded validation split.
rule prepare:
    input:
        sources=dataset_files,
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
            "de3pipe/stages/prepare.py",
        ],
    output:
        data=directory(f"{RESULTS}/{{task}}/seed{{seed}}/prepared"),
    params:
        config=CONFIG_ARGS,  # the config files the workflow read: the job reads exactly these
        data=setting("data"),
        dataset=dataset_definition,
    log:
        f"{LOGS}/prepare/{{task}}.seed{{seed}}.log",
    benchmark:
        f"{LOGS}/benchmarks/prepare/{{task}}.seed{{seed}}.tsv"
    conda:
        "../envs/de3pipe.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "OMP_NUM_THREADS=${{SLURM_CPUS_PER_TASK:-{threads}}} de3pipe prepare --task {wildcards.task} --seed {wildcards.seed} --out {output.data} {params.config} --overwrite --quiet > {log} 2>&1"
