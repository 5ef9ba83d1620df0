# de3pipe: distance-enhanced early exiting of BERT, per GLUE task:
# prepare -> finetune -> prototypes -> signals -> calibrate -> evaluate -> report
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/prototypes.smk"
include: "workflow/rules/signals.smk"
include: "workflow/rules/calibrate.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


# Light rules (no torch, seconds each) run on the submitting host when a cluster executor is used.
localrules:
    all,
    calibrate,
    report,


rule all:
    input:
        rules.report.output,
