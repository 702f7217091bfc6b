#!/usr/bin/env bash
# The math RL path at toy scale, on CPU, with this repository's own commands: generated math word problems
# (task math_gen, \boxed{} answers scored by the math scorer), cold-start traces, format SFT, GRPO on in-process
# vLLM, then SFT-only vs SFT+RL on held-out problems, paired over problems. Stage times go to the log.
# Measured on the idle 2-core development machine: about 25 minutes in all (SFT 14 min, RL 9 min, evaluation
# of both checkpoints 2 min). Produces models/tiny-math-organizer (copied by hand).
set -euo pipefail
cd "$(dirname "$0")/.."
export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}
A=".venv/bin/asyncthink"
stage() { local t0; t0=$(date +%s); "$@"; echo "TIME $(( $(date +%s) - t0 )) s: $*"; }

# 1. a tokenizer trained on the task's trace text, and a random "mini" Llama (4 layers, hidden 192, 2.0 M params)
stage $A train corpus --config configs/synth_math_gen_tiny.yaml --out runs/mathgen/corpus.txt --problems 1500
stage $A tiny-model --out runs/mathgen/model --size mini --corpus runs/mathgen/corpus.txt --max-index 8

# 2. cold start: programmatic AsyncThink and sequential traces replayed through the executor, then format SFT
stage $A train synth --config configs/synth_math_gen_tiny.yaml
stage $A train sft --config configs/sft_math_gen_tiny.yaml

# 3. GRPO (organizer and worker rows) with the accuracy + concurrency reward, rollouts on in-process vLLM
stage $A train rl --config configs/rl_math_gen_tiny.yaml

# 4. SFT only vs SFT + RL on held-out problems (eval harness + paired bootstrap over problems)
stage .venv/bin/python scripts/math_gen_before_after.py --sft runs/mathgen/sft --out runs/mathgen/eval
