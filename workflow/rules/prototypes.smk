# Stage 2: train the prototypical networks with DAR (backbone and classifiers frozen).
rule prototypes:
    input:
        **stage_input("prototypes"),
    output:
        **stage_output("prototypes"),
    params:
        settings=stage_params("prototypes"),
    log:
        log_path("prototypes"),
    benchmark:
        benchmark_path("prototypes")
    conda:
        "../envs/de3pipe.yaml"
    threads: TORCH_THREADS
    resources:
        **torch_resources(
            mem_mb=lambda wildcards, attempt: 8000 * attempt,
            runtime=lambda wildcards, attempt: 240 * attempt,
        ),
    shell:
        stage_shell("prototypes")
