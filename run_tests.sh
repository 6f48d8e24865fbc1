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
exec python -m pytest --durations=25 "$@"
