#!/usr/bin/env bash
# Sets up a fresh machine and runs the whole test suite against real local servers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export GX_ANALYTICS_ENABLED=false
# Static checks first (seconds): ruff's rules (pyproject.toml) and the layer contract (.importlinter,
# docs/architecture.md).
# A failure fails the run, but only after the tests ran (one late lint error must not hide them).
static_rc=0
.venv/bin/ruff check . || static_rc=1
PYTHONPATH="$PWD" .venv/bin/lint-imports || static_rc=1
set +e
# Two workers by default (most tests wait on real servers, not the CPU); LEC_TEST_WORKERS=0 runs in one process.
workers="${LEC_TEST_WORKERS:-2}"
xdist=()
# --dist loadfile: a module's tests run in order on one worker. (loadgroup's xdist_group markers do
# not apply with pytest 9: xdist 3.8 renames item._nodeid, which pytest 9 no longer reads.)
if [ "$workers" != "0" ]; then xdist=(-n "$workers" --dist loadfile); fi
.venv/bin/python -m pytest -p no:cacheprovider "${xdist[@]}" "$@"
rc=$?
set -e
# pytest exits 5 when no test ran: that is a failure here, never a pass.
if [ "$rc" -eq 5 ]; then echo "no tests ran: failing" >&2; exit 1; fi
if [ "$static_rc" -ne 0 ] && [ "$rc" -eq 0 ]; then echo "static checks failed (ruff / lint-imports above)" >&2; exit 1; fi
exit "$rc"
