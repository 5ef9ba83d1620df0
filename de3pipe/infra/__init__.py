"""Infrastructure: atomic file writing, the run layout, the pipeline graph, MLflow tracking."""
