#!/usr/bin/env bash
# Does GRPO's gain over SFT on generated math hold over several RL seeds? One SFT checkpoint (built as
# scripts/train_tiny_math.sh builds it, when runs/mathgen/sft is missing), then GRPO with each seed in SEEDS
# (default 0 1 2) from it, each evaluated against SFT with intervals over clusters of related problems, on two
# held-out lists: 200 distinct sums (the eval config's default, distinct: content) and the earlier 200
# wordings of 108 sums (distinct: wording), on which the shipped model was first measured. Stage times go to
# the log; each seed's tables are runs/mathgen/eval-*-s<seed>/before_after.{md,json}.
#   bash scripts/math_rl_seeds.sh 2>&1 | tee runs/mathgen-seeds.log
set -euo pipefail
cd "$(dirname "$0")/.."
export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}
A=".venv/bin/asyncthink"
P=".venv/bin/python"
SEEDS=${SEEDS:-"0 1 2"}
stage() { local t0; t0=$(date +%s); "$@"; echo "TIME $(( $(date +%s) - t0 )) s: $*"; }

if [ ! -d runs/mathgen/sft ]; then
  stage $A train corpus --config configs/synth_math_gen_tiny.yaml --out runs/mathgen/corpus.txt --problems 1500
  stage $A tiny-model --out runs/mathgen/model --size mini --corpus runs/mathgen/corpus.txt --max-index 8
  stage $A train synth --config configs/synth_math_gen_tiny.yaml
  stage $A train sft --config configs/sft_math_gen_tiny.yaml
fi

OPTIONS="min_groups: 2, max_groups: 2, min_factor: 2, max_factor: 5, p_give_away: 0.5, test_fraction: 0.2"
WORDING="tasks=[{name: math_gen, label: math_gen-heldout-wording, split: test, n: 200, options: {$OPTIONS, distinct: wording}}]"
for s in $SEEDS; do
  stage $A train rl --config configs/rl_math_gen_tiny.yaml "seed=$s" "out=runs/mathgen/rl-s$s"
  stage $P scripts/math_gen_before_after.py --sft runs/mathgen/sft --rl "runs/mathgen/rl-s$s/final" \
    --out "runs/mathgen/eval-content-s$s" --sft-out runs/mathgen/eval-content-sft
  stage $P scripts/math_gen_before_after.py --sft runs/mathgen/sft --rl "runs/mathgen/rl-s$s/final" \
    --out "runs/mathgen/eval-wording-s$s" --sft-out runs/mathgen/eval-wording-sft "$WORDING"
done
