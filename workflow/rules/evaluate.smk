# Apply the frozen thresholds to the test split; wall-clock speed-up of batched early exit.
rule evaluate:
    input:
        **stage_input("evaluate"),
    output:
        **stage_output("evaluate"),
    params:
        settings=stage_params("evaluate"),
    log:
        log_path("evaluate"),
    benchmark:
        benchmark_path("evaluate")
    conda:
        "../envs/de3pipe.yaml"
    threads: TORCH_THREADS
    resources:
        **torch_resources(
            mem_mb=4000,
            runtime=30,
        ),
    shell:
        stage_shell("evaluate")
