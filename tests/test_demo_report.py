"""The demo's report shows each mode's SFT-only row beside the RL-trained checkpoint it evaluates, from the
``results.json`` shipped beside the model (so the figures are the measured ones, with RL minus SFT)."""

from __future__ import annotations

import json

from asyncthink.eval.demo import sft_section
from asyncthink.models import shipped_model
from asyncthink.modes import Mode


def test_each_mode_has_its_sft_only_row_and_rl_minus_sft():
    path = shipped_model() / "results.json"
    results = json.loads(path.read_text())
    text = sft_section(path)
    for mode in Mode:
        sft = next(r for r in results["runs"] if r["checkpoint"] == "sft" and r["mode"] == mode.value)
        rl_minus_sft = [c for c in results["comparisons"] if c["metric"] == "accuracy"
                        and c["a"] == f"{mode.value} sft" and c["b"] == f"{mode.value} rl"]
        pooled = max(rl_minus_sft, key=lambda c: len(c["seeds"]))
        row = next(line for line in text.splitlines() if line.startswith(f"| {mode.value} |"))
        assert f"| {100 * sft['accuracy']:.1f} [" in row and f"{100 * pooled['diff']:+.1f} [" in row, row
        assert row.endswith(f"| {', '.join(map(str, pooled['seeds']))} |")


def test_no_results_json_no_section(tmp_path):
    assert sft_section(tmp_path / "results.json") == ""
