# Single-node Slurm (with accounting) on 127.0.0.1 for the tests, sourced by scripts/test.sh.
# stop_slurm stops Slurm only if start_slurm started it (by the PIDs in its own pidfiles).

SLURM_SCRIPTS="$PFCON_REPO/scripts/infra/slurm"
SLURM_STARTED_HERE=0

start_slurm() {
  if ! sinfo --noheader >/dev/null 2>&1; then
    SLURM_STARTED_HERE=1
  fi
  bash "$SLURM_SCRIPTS/start-slurm.sh" >/dev/null
}

stop_slurm() {
  if [ "$SLURM_STARTED_HERE" = 1 ]; then
    bash "$SLURM_SCRIPTS/stop-slurm.sh" 2>/dev/null
  fi
}
