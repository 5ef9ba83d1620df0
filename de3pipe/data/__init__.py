"""GLUE data: reading the original TSV layout or the hub, and preparing normalised splits."""
