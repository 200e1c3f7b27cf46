#!/usr/bin/env bash
# The README's main job: start fpgacspd on the simulator, train the visual-Sudoku example through it in regime b
# (symbol grounding: only the blank cells are labelled; Abduction learns the givens from the solver alone),
# print the results, then stop the daemon with SIGTERM (its graceful drain) and check it exited cleanly.
# Usage: scripts/run-main-job.sh [extra arguments for python -m examples.visual_sudoku]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
workdir=$(mktemp -d /tmp/fpgacsp-main.XXXXXX)
log="$workdir/fpgacspd.log"
sock="$workdir/fpgacspd.sock"

"$BIN/python" -m fpgacspd --listen "unix:$sock" --log-format json 2>"$log" &
daemon=$!
stop_daemon() {
  if kill -0 "$daemon" 2>/dev/null; then
    kill -TERM "$daemon"
    wait "$daemon" || { echo "fpgacspd exited with $? (log: $log)" >&2; return 1; }
  fi
}
trap 'stop_daemon || true' EXIT

for _ in $(seq 1 360); do  # 180 s: its first start compiles the numba core, slow on a loaded machine
  grep -q '"event": "ready"' "$log" && break
  kill -0 "$daemon" 2>/dev/null || { echo "fpgacspd failed to start:" >&2; cat "$log" >&2; exit 1; }
  sleep 0.5
done
grep -q '"event": "ready"' "$log" || { echo "fpgacspd not ready after 180 s:" >&2; cat "$log" >&2; exit 1; }
echo "fpgacspd ready on unix://$sock (log: $log)"

status=0
"$BIN/python" -m examples.visual_sudoku --target "unix://$sock" --regime b "$@" || status=$?
trap - EXIT
stop_daemon
echo "fpgacspd stopped cleanly"
exit "$status"
