"""The pfcon controller without HTTP: jobs and their guards, the record of their steps, the
runner that executes them as Prefect flow runs, and the loops beside it."""
