# Stage 1: fine-tune the backbone and one internal classifier per layer.
rule finetune:
    input:
        **stage_input("finetune"),
    output:
        **stage_output("finetune"),
    params:
        settings=stage_params("finetune"),
    log:
        log_path("finetune"),
    benchmark:
        benchmark_path("finetune")
    conda:
        "../envs/de3pipe.yaml"
    threads: TORCH_THREADS
    resources:
        **torch_resources(
            mem_mb=lambda wildcards, attempt: 8000 * attempt,
            runtime=lambda wildcards, attempt: 240 * attempt,
        ),
    shell:
        stage_shell("finetune")
