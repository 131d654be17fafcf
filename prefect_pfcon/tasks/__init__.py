"""Prefect tasks: the four pfcon job steps and the reprocessing and pipeline summaries."""
