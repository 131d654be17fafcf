"""The embedded default: a local Prefect server, the pfcon API and the runner in one process."""
