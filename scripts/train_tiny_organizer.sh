#!/usr/bin/env bash
# Reproduce models/tiny-organizer and its RL experiments from nothing, on CPU, with this repository's own commands.
# The experiments (scripts/ablation.py): the shipped RL config over 3 seeds, the config before the fix and its
# one-factor arms, accuracy-only RL and no cold start; every checkpoint evaluated, results.json and curves.
# Stage times go to the log (TIME lines); measured on the idle 2-core development machine, see the model card.
set -euo pipefail
cd "$(dirname "$0")/.."
export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-2}
A=".venv/bin/asyncthink"
stage() { local t0; t0=$(date +%s); "$@"; echo "TIME $(( $(date +%s) - t0 )) s: $*"; }

# 1. a tokenizer trained on trace text, and a random "mini" Llama (4 layers, hidden 192, 2.0 M parameters)
stage $A train corpus --config configs/synth_countdown_tiny.yaml --out runs/tiny/corpus.txt --problems 200
stage $A tiny-model --out runs/tiny/model --size mini --corpus runs/tiny/corpus.txt --max-index 8

# 2. cold start: programmatic search traces (AsyncThink and sequential) replayed through the executor, then SFT
stage $A train synth --config configs/synth_countdown_tiny.yaml
stage $A train sft --config configs/sft_countdown_tiny.yaml

# 3. the RL experiments (scripts/ablation.py): the shipped config over 3 seeds (one checkpoint, RL on AsyncThink
#    and sequential rollouts in equal shares, so every mode of the demo is trained alike), the arms that differ
#    from it or from the config before the fix in one factor (seed 0), every checkpoint on the demo's held-out
#    problems, then results.json, its tables and curves beside the shipped model
P=".venv/bin/python"
stage $P scripts/ablation.py train rl --seeds 0 1 2
stage $P scripts/ablation.py train before-fix lr-3e-5 warmup-10 advantage-mean acc-only no-cold-start --seeds 0
stage $P scripts/ablation.py evaluate

# 4. ship seed 0 of the shipped config, its curves and configs, and the results of every run
mkdir -p models/tiny-organizer && find models/tiny-organizer -mindepth 1 ! -name README.md -delete  # keep the card
cp runs/tiny/rl-rl-s0/final/* models/tiny-organizer/
cp runs/tiny/rl-rl-s0/curves.png models/tiny-organizer/rl_curves.png
cp runs/tiny/rl-rl-s0/config.yaml models/tiny-organizer/rl_resolved_config.yaml
cp runs/tiny/sft/loss.png models/tiny-organizer/sft_loss.png
cp runs/tiny/sft/config.yaml models/tiny-organizer/sft_resolved_config.yaml
cp configs/*countdown_tiny*.yaml models/tiny-organizer/
stage $P scripts/ablation.py collect --out models/tiny-organizer/results.json
