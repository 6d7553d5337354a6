#!/usr/bin/env bash
# Creates .venv (or $ASR_VENV) and installs the project with its dev extra.
# torch is installed first so that pip never resolves "torch>=2.1" to a multi-GB CUDA build
# where a local CPU wheel exists; override with TORCH_SPEC (e.g. TORCH_SPEC="torch==2.5.1").
set -euo pipefail
cd "$(dirname "$0")"
venv=${ASR_VENV:-.venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
py="$venv/bin/python"
if ! "$py" -c "import torch" 2>/dev/null; then
  "$py" -m pip install -q "${TORCH_SPEC:-torch==2.13.0}" || "$py" -m pip install -q torch
fi
# this package was called "asr" before (a name PyPI gives an unrelated project): an old editable install of
# this folder under that name is replaced, never anything else called asr
if "$py" -m pip show asr 2>/dev/null | grep -qx "Editable project location: $(pwd)"; then
  "$py" -m pip uninstall -q -y asr
fi
"$py" -m pip install -q -e ".[dev,plots,serve,serve-test]"
"$py" -c "import torch, asr; print('asr ready: torch', torch.__version__)"
