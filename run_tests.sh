#!/usr/bin/env bash
# Set up (once) and run the checks and the test suite: ./run_tests.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_env.sh test
echo "==> ruff"
ruff check medsafe_utils medsafetybench tests benchmarks scripts
ruff format --check medsafe_utils medsafetybench tests benchmarks scripts
echo "==> notebooks committed without outputs"
nbstripout --verify notebooks/*.ipynb
echo "==> pytest"
# Two pytest-xdist workers (MEDSAFE_TEST_WORKERS sets how many; 0: one process), each with its
# share of the cores; the modules of one shared run go to one worker (tests/conftest.py).
exec python -m pytest -n "${MEDSAFE_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder \
  --durations=25 "$@"
