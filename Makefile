# Benchmarks print figures and write benchmarks/results/*.json and BENCHMARKS.md; they are not
# tests and do not run in CI. They measure the finished runs under data/ (`snakemake --cores 8 all`).
.PHONY: bench bench-inference bench-training

bench: bench-inference bench-training
	python benchmarks/summarize.py

bench-inference:
	python benchmarks/inference.py $(BENCH_ARGS)

bench-training:
	python benchmarks/training.py
