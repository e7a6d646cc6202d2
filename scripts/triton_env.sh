#!/usr/bin/env bash
# Create (or reuse) the separate virtualenv that runs the real-Triton tests: .triton-venv with nvidia-pytriton
# (bundles tritonserver 2.51 + the Python backend) and numpy<2 (the Python backend stub returns empty tensors
# with numpy 2). Idempotent: a finished environment (stamp file) is reused as it is.
#
#   scripts/triton_env.sh [VENV_DIR]        default: <project>/.triton-venv (or $SERVOPT_TRITON_VENV)
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" -m servopt.testing.triton_env "$@"
