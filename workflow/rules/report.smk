# The paper-style table over every task and seed, and the metric/speed-up plots.
rule report:
    input:
        evaluations=expand(plain_path(STAGES["report"].inputs["evaluations"], RESULTS), task=TASKS, seed=SEEDS),
        curves=expand(plain_path(STAGES["report"].inputs["curves"], RESULTS), task=TASKS, seed=SEEDS),
    output:
        **stage_output("report"),
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
