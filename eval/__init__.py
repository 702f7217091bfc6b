"""Evaluation harness: tasks x modes x budgets on one model, resumable, with report, plots and a viewer.

``asyncthink eval --config configs/eval_tiny.yaml --out runs/tiny`` or, from
Python, ``await run_eval(load_eval_config(path), out_dir, engine=...)``.
Modules: ``config`` (EvalConfig), ``harness`` (running and resuming),
``store`` (the records directory), ``stats`` (figures and bootstrap CIs),
``outputs`` (summary, report and plots from the records), ``report``
(markdown), ``plots`` and ``timeline`` (PNGs), ``html_view`` (an episode as a
page; the terminal viewer is ``asyncthink.display``), ``demo`` (the main job),
``cli`` (the commands).
"""

from asyncthink.eval.config import EvalConfig, TaskSpec, load_eval_config
from asyncthink.eval.harness import evaluate, run_eval

__all__ = ["EvalConfig", "TaskSpec", "evaluate", "load_eval_config", "run_eval"]
