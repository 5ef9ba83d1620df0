# Benchmarks print figures and write benchmarks/results/*.json and BENCHMARKS.md; they are not
# tests and do not run in CI. They measure the finished runs of the reproduction study
# (`snakemake all --cores 2 --configfile config/study.yaml`, results/study); BENCH_RESULTS=data
# measures the default run instead. BENCH_ARGS go to the inference benchmark.
.PHONY: bench bench-inference bench-training bench-serving bench-reruns bench-guarantee bench-seed-coverage bench-own-data bench-profile study

BENCH_RESULTS ?= results/study
BENCH_ARGS ?= --seeds 1 --max-samples 256

bench: bench-inference bench-training bench-serving bench-reruns bench-guarantee bench-seed-coverage
	python benchmarks/summarize.py

bench-inference:
	python benchmarks/inference.py --results $(BENCH_RESULTS) $(BENCH_ARGS)

bench-training:
	python benchmarks/training.py --results $(BENCH_RESULTS)

# The served model's request limits, measured on the default run's SST-2 model.
bench-serving:
	python benchmarks/serving.py --run data/sst2/seed42

# Precision x threads on the tiny config, and the default run against its committed figures.
bench-reruns:
	python benchmarks/reruns.py --default

# The guarantee's validity and efficiency: 500 random splits of each task's labeled examples of the
# default run, recalibrated from its stored signals.
bench-guarantee:
	python benchmarks/guarantee.py --results data --splits 500

# Coverage of the report's seed-aware interval in simulated studies with a seed effect (no runs needed).
bench-seed-coverage:
	python benchmarks/seed_coverage.py

# Where early exit spends its time per part (layers, exit heads, signals, de3's distances, the loop),
# on the default run's SST-2 model.
bench-profile:
	python benchmarks/profile_inference.py --run data/sst2/seed42

# A dataset of your own: STS-B binned into three classes, as CSV files, through the default recipe
# (about half an hour on 2 cores; the files and runs go to OWN_DATA_OUT, outside the repository).
OWN_DATA_OUT ?= /tmp/de3pipe-sts-classes
bench-own-data:
	python benchmarks/own_data.py --out $(OWN_DATA_OUT)

# The reproduction study: 4 tasks x 10 seeds (config/study.yaml). On a 2-core machine two
# single-thread torch jobs at once go 1.6x faster than one job on both cores. The study's report
# is committed while its runs are not: --forcerun report makes Snakemake build the runs the
# report needs on a fresh clone (it would otherwise take the committed report as up to date).
study:
	snakemake all --cores 2 --forcerun report \
		--set-threads finetune=1 prototypes=1 signals=1 evaluate=1 --resources torch_jobs=2 \
		--configfile config/study.yaml
