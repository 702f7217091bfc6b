#!/usr/bin/env bash
# Reproduce models/tiny-organizer from nothing, on CPU, with this repository's own commands.
# Measured on the 2-core development machine: about 2.5 hours in all (SFT stage 1 ~55 min, stage 2 ~23 min,
# each RL run ~15 min, evaluations a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-2}
A=".venv/bin/asyncthink"

# 1. a tokenizer trained on trace text, and a random 'mini' Llama (4 layers, hidden 192)
$A train corpus --config configs/synth_countdown_tiny.yaml --out runs/tiny/corpus.txt --problems 400
$A tiny-model --out runs/tiny/model --size mini --corpus runs/tiny/corpus.txt --max-index 8

# 2. cold start: programmatic AsyncThink and sequential traces, then format SFT (TRL SFTTrainer), in two
#    stages: numbers 1..12 (the format, and more arithmetic), then 1..9 (the shipped difficulty)
$A train synth --config configs/synth_countdown_tiny.yaml
$A train sft --config configs/sft_countdown_tiny.yaml
$A train synth --config configs/synth_countdown_tiny_stage2.yaml
$A train sft --config configs/sft_countdown_tiny_stage2.yaml

# 3. RL (GRPO over organizer and worker rows), with and without the concurrency reward (the ablation)
$A train rl --config configs/rl_countdown_tiny.yaml
$A train rl --config configs/rl_countdown_tiny.yaml out=runs/tiny/rl-no-concurrency rewards.concurrency_weight=0

# 4. ship the RL checkpoint, its curves and config
rm -rf models/tiny-organizer && mkdir -p models/tiny-organizer
cp runs/tiny/rl/final/* models/tiny-organizer/
cp runs/tiny/rl/curves.png models/tiny-organizer/rl_curves.png
cp runs/tiny/sft/loss.png models/tiny-organizer/sft_stage1_loss.png
cp runs/tiny/sft9/loss.png models/tiny-organizer/sft_stage2_loss.png
cp configs/*countdown_tiny*.yaml models/tiny-organizer/

# 5. the ablation table (SFT only vs SFT+RL, with vs without the concurrency reward)
.venv/bin/python scripts/ablation.py --out runs/tiny/ablation
