# The paper-style table over every task and seed, and the metric/speed-up plots.
rule report:
    input:
        evaluations=expand(STAGES["report"].inputs["evaluations"], task=TASKS, seed=SEEDS),
        curves=expand(STAGES["report"].inputs["curves"], task=TASKS, seed=SEEDS),
    output:
        **stage_output("report"),
    log:
        "logs/report.log",
    conda:
        "../envs/de3pipe.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        f"de3pipe report --out data/report {{input.evaluations}} {CONFIG_ARGS} --overwrite > {{log}} 2>&1"
