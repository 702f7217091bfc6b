"""What a run was trained or evaluated on: each dataset's size, source and content hash.

The trainer and the evaluator put ``dataset_manifest`` of every problem list
they read into their resolved config (``data``), so a result names its data:
how many problems, where they came from (a shipped file with its path, a hub
id and split, a local file, or a generator with its options) and a SHA-256 of
the problems themselves. The hash is over ``(id, question, gold)`` of every
problem, sorted by id, so it is the same whatever order a seed shuffled them
into, and changes when any problem, answer or the problem count does.
"""

from __future__ import annotations

import collections
import hashlib
import json
from typing import Any

from asyncthink.task import Problem


def problems_sha256(problems: list[Problem]) -> str:
    """SHA-256 of the problems' ``(id, question, gold)``, in id order."""
    digest = hashlib.sha256()
    for p in sorted(problems, key=lambda p: str(p.get("id"))):
        digest.update(json.dumps([str(p.get("id")), str(p.get("question")), str(p.get("gold"))]).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def dataset_manifest(task: str, options: dict[str, Any], split: str,
                     problems: list[Problem]) -> dict[str, Any]:
    """Size, source(s) and hash of one problem list, as plain data for a resolved config."""
    sources = collections.Counter(str(p["source"]) for p in problems if p.get("source"))
    entry: dict[str, Any] = {"task": task, "split": split, "size": len(problems),
                             "sha256": problems_sha256(problems)}
    if sources:
        entry["sources"] = {_where(name, options): n for name, n in sorted(sources.items())}
        entry["skipped_unscorable"] = _skipped(task, options, split)
    else:
        entry["sources"] = {f"generated:{task}": len(problems)}  # by the task's generator, with these options
        entry["options"] = dict(options)
    return entry


def _where(source: str, options: dict[str, Any]) -> str:
    """A shipped math name with its file path; other sources (hub ids, local paths) as they are."""
    from asyncthink.envs.math_task import SOURCES, data_dir

    if source in SOURCES:
        return f"{source} ({data_dir(options.get('data_dir')) / SOURCES[source][0]})"
    return source


def _skipped(task: str, options: dict[str, Any], split: str) -> int:
    """Rows of a bring-your-own math source left out because they cannot be scored (0 for shipped files)."""
    if task != "math":
        return 0
    from asyncthink.envs.math_data import as_spec, load_spec

    key = {"train": "train_dataset", "test": "dataset"}.get(split)
    spec = as_spec(options.get(key)) if key else None
    return load_spec(spec).skipped if spec is not None else 0
