"""Plain libraries the tasks and blocks build on: path confinement, .chrislink resolution,
transfers, archives, trees, the plugin command, image references, log records, Kubernetes job
templates, and the fsspec filesystems. Nothing here imports a Prefect flow, task or block."""
