"""The results directory: one JSON Lines file of episode records per (task, mode, budget).

Each finished episode is appended (and flushed) the moment it ends, so a run
killed halfway keeps everything it finished. Retried episodes are appended
too; once their run is over the file is rewritten with one record per id. Loading tolerates what a crash
leaves behind: a torn last line is dropped and the file rewritten without it
(the original is kept as ``.jsonl.bak``), so later appends start on a clean line. When an episode id appears twice (an
``error`` episode that was retried) the later record wins.

Layout under the output directory::

    config.yaml                       the resolved EvalConfig of the last run
    records/<task>/<mode>-<budget>.jsonl
    summary.json, report.md, plots/*.png, episodes/*.html
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from asyncthink.episode import Episode
from asyncthink.eval.config import budget_label

log = logging.getLogger(__name__)


@dataclass(frozen=True, order=True)
class RunKey:
    """One cell of the evaluation grid."""

    task: str
    budget: int
    mode: str

    @property
    def name(self) -> str:
        return f"{self.task}/{self.mode}-{budget_label(self.budget)}"


class RecordStore:
    """Episode records of one output directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: RunKey) -> Path:
        return self.root / "records" / key.task / f"{key.mode}-{budget_label(key.budget)}.jsonl"

    def append(self, key: RunKey, ep: Episode) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(ep.to_json() + "\n")
            f.flush()

    def rewrite(self, key: RunKey, episodes: list[Episode]) -> None:
        _write_atomic(self.path(key), episodes)

    def load(self, key: RunKey) -> dict[str, Episode]:
        """Records of ``key`` by episode id (the last record of an id wins)."""
        path = self.path(key)
        if not path.exists():
            return {}
        raw = path.read_text(encoding="utf-8")
        records, bad = _parse(raw, path)
        if bad or (raw and not raw.endswith("\n")):
            backup = path.with_suffix(".jsonl.bak")
            log.warning("%s: %d unreadable line(s) (an interrupted write?); original kept as %s", path, bad, backup)
            backup.write_text(raw, encoding="utf-8")
            _write_atomic(path, records)
        return {ep.episode_id: ep for ep in records}


def _write_atomic(path: Path, episodes: list[Episode]) -> None:
    """Replace ``path`` so that a crash leaves either the old file or the new one."""
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(ep.to_json() + "\n" for ep in episodes), encoding="utf-8")
    tmp.replace(path)


def _parse(raw: str, path: Path) -> tuple[list[Episode], int]:
    records, bad = [], 0
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(Episode.from_dict(json.loads(line)))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("%s:%d: not an episode record: %s", path, n, exc)
            bad += 1
    return records, bad
