"""The pfcon job flow and the flows built on it: batch reprocessing and ChRIS pipelines."""
