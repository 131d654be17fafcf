"""The pfcon job flow and the batch reprocessing flow built on it."""
