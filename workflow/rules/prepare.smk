# Read the GLUE task (GLUE folder or hub) and carve the seeded validation split.
rule prepare:
    input:
        **stage_input("prepare"),
    output:
        **stage_output("prepare"),
    params:
        settings=stage_params("prepare"),
    log:
        log_path("prepare"),
    conda:
        "../envs/de3pipe.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        stage_shell("prepare")
