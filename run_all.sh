#!/usr/bin/env bash
# Regenerate every table and figure: ./run_all.sh [profile] [--only NN ...] [--from NN]
#   [-p NAME VALUE ...] [-f FILE.yaml ...]  (parameters over the profile's, as in papermill)
# Profile: smoke (default; offline, CPU, minutes), teach (offline, CPU, under 30 minutes: figures
# that show the study's findings in miniature) or paper (the released study's settings; GPUs).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_env.sh ""  # "": no extras (a bare source would pass our arguments)
exec python -m medsafe_utils.pipeline "$@"
