# Sweep every strategy on the validation split and freeze one operating point per target.
rule calibrate:
    input:
        **stage_input("calibrate"),
    output:
        **stage_output("calibrate"),
    params:
        settings=stage_params("calibrate"),
    log:
        log_path("calibrate"),
    conda:
        "../envs/de3pipe.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        stage_shell("calibrate")
