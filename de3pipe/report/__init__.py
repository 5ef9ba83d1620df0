"""The cross-task report: collecting the runs, the statistics, tables, findings, plots and the page."""
