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
# Two workers (pytest-xdist): notebook kernels start and import one core at a time; the tests
# that share a run (the smoke chain, the paper-shaped chain) stay on one worker (tests/conftest.py).
exec python -m pytest -n "${MEDSAFE_TEST_WORKERS:-2}" --dist loadgroup --durations=25 "$@"
