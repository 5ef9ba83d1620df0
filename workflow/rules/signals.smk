# One forward pass per split storing every layer's exit signals.
rule signals:
    input:
        **stage_input("signals"),
    output:
        **stage_output("signals"),
    params:
        settings=stage_params("signals"),
    log:
        log_path("signals"),
    benchmark:
        benchmark_path("signals")
    conda:
        "../envs/de3pipe.yaml"
    threads: TORCH_THREADS
    resources:
        **torch_resources(
            mem_mb=lambda wildcards, attempt: 8000 * attempt,
            runtime=lambda wildcards, attempt: 240 * attempt,
        ),
    shell:
        stage_shell("signals")
