# Strategies compared at matched speed-ups on calibrated curves (bootstrap intervals), and the plots.
rule report:
    input:
        evaluations=expand(plain_path(STAGES["report"].inputs["evaluations"], RESULTS), task=TASKS, seed=SEEDS),
        curves=expand(plain_path(STAGES["report"].inputs["curves"], RESULTS), task=TASKS, seed=SEEDS),
        points=expand(plain_path(STAGES["report"].inputs["points"], RESULTS), task=TASKS, seed=SEEDS),
        code=code_files("report"),
    output:
        **stage_output("report"),
    params:
        settings=stage_params("report"),
    log:
        f"{LOGS}/report.log",
    conda:
        "../envs/de3pipe.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        f"de3pipe report --out {RESULTS}/report {{input.evaluations}} {CONFIG_ARGS} --overwrite > {{log}} 2>&1"
