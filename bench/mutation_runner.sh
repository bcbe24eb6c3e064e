#!/bin/bash
# The test command mutmut runs for each mutant (see bench/MUTATION.md). mutmut leaves the original of
# the mutated file beside it as *.py.bak, which tells which module the mutant is in:
# - a host pipeline mutant runs the pipeline's own unit tests first, and only if they all pass, the
#   coordinator's; which of the two killed it is appended to $MUTATION_LOG, so one run gives the score
#   without the coordinator test (before) and with it (after);
#   (survivors' diffs go to $MUTATION_LOG.diff, readable while mutmut runs: never run `mutmut show`
#   then, it reads the mutated file and corrupts the cache);
# - a coordinator or recovery mutant runs the coordinator test (no other unit test reaches them).
set -u
cd "$(dirname "$0")/.."
# tmp_path on tmpfs: the store commits (and fsyncs) at every step, and a disk makes that the cost;
# two runs at once (one per worktree, on different files) each need their own MUTATION_BASETEMP.
# A mutant that loops for ever is stopped by mutmut, which kills this script but not its pytest: the
# timeout ends that pytest too, or it would go on taking a core.
PYTEST=(timeout -k 5 120 .venv/bin/pytest -x -q -p no:cacheprovider --no-header --basetemp="${MUTATION_BASETEMP:-/dev/shm/orchestrator-mutmut}")
LOG=${MUTATION_LOG:-.mutmut-phases.log}
OWN=(tests/unit/test_pipeline.py tests/unit/test_drain.py tests/unit/test_journal.py tests/unit/test_lb_watch.py tests/unit/test_gate.py tests/unit/test_command_status.py)
bak=$(find orchestrator -name '*.py.bak' | head -1)
if [ -z "$bak" ]; then  # mutmut's first, unmutated run
  exec "${PYTEST[@]}" "${OWN[@]}" tests/unit/test_coordinator.py
fi
file=${bak%.bak}
id="$file $(diff "$bak" "$file" | md5sum | cut -c1-12)"
case $file in
  orchestrator/engine/host/*)
    if ! "${PYTEST[@]}" "${OWN[@]}" >/dev/null 2>&1; then echo "$id killed-by-own" >>"$LOG"; exit 1; fi
    if ! "${PYTEST[@]}" tests/unit/test_coordinator.py >/dev/null 2>&1; then
      echo "$id killed-by-coordinator" >>"$LOG"; exit 1
    fi
    echo "$id survived" >>"$LOG"; { echo "== $id"; diff "$bak" "$file"; } >>"$LOG.diff"; exit 0 ;;
  *)
    if ! "${PYTEST[@]}" tests/unit/test_coordinator.py >/dev/null 2>&1; then
      echo "$id killed-by-coordinator" >>"$LOG"; exit 1
    fi
    echo "$id survived" >>"$LOG"; { echo "== $id"; diff "$bak" "$file"; } >>"$LOG.diff"; exit 0 ;;
esac
