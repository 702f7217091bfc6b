"""Bring-your-own math data: any Hugging Face dataset as math problems; unscorable rows are counted.

A math task's ``dataset`` or ``train_dataset`` option is either a shipped name
(``aime24``, ... ; the offline files in ``data/math``) or a mapping with the
fields of ``MathDataSpec``::

    task_options:
      train_dataset: {path: agentica-org/DeepScaleR-Preview-Dataset, split: train,
                      question_field: problem, answer_field: answer}
      dataset: {path: /data/gsm8k/test.parquet, question_field: question,
                answer_field: answer, extractor: gsm8k}

``path`` is a hub id (read with ``datasets.load_dataset``; it works wherever
the machine reaches the hub or has the dataset in its cache), or a local
parquet file, JSON Lines file, or folder of either, or a folder written by
``Dataset.save_to_disk`` / of ``.arrow`` files. The gold answer is the answer
field run through ``extractor``; a row whose question or gold comes out empty
cannot be scored, so it is left out, counted in ``LoadedMath.skipped`` and
logged as a warning (never silently dropped). Loads are cached per spec.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

EXTRACTORS = ("none", "gsm8k", "boxed", "last_number")
_LOCAL_FORMATS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".arrow": "arrow"}
_LAST_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


@dataclass(frozen=True)
class MathDataSpec:
    """Where a math dataset is and which of its fields hold the question and the answer."""

    path: str
    """A hub id (``agentica-org/DeepScaleR-Preview-Dataset``), or a local parquet / JSON Lines / Arrow file or
    folder."""
    question_field: str = "problem"
    """Column with the problem text."""
    answer_field: str = "answer"
    """Column with the gold answer (or a worked solution, with ``extractor``)."""
    split: str = "train"
    """Split to read (hub datasets, ``save_to_disk`` folders, local folders with files named after
    splits)."""
    extractor: str = "none"
    """How the gold comes out of the answer field: ``none`` (as it is; 27.0 -> "27"), ``gsm8k`` (after the
    last ``####``, thousands separators removed), ``boxed`` (the last ``\\boxed{...}``) or ``last_number``."""
    id_field: str | None = None
    """Column with a row id; None: ``{name}-{row index}``."""
    config_name: str | None = None
    """Hub dataset configuration (``main`` for gsm8k), if it has several."""
    name: str | None = None
    """Short name for ids and reports; None: the last part of ``path``."""

    def __post_init__(self) -> None:
        if not self.path or not isinstance(self.path, str):
            raise ValueError(f"a math dataset needs a path (hub id or local file/folder), got {self.path!r}")
        if self.extractor not in EXTRACTORS:
            raise ValueError(f"extractor must be one of {EXTRACTORS}, got {self.extractor!r}")
        if not self.question_field or not self.answer_field:
            raise ValueError(f"question_field and answer_field must be named, got {self.question_field!r}, "
                             f"{self.answer_field!r}")

    @property
    def label(self) -> str:
        return self.name or Path(self.path.rstrip("/")).name.removesuffix(Path(self.path).suffix) or self.path

    @property
    def source(self) -> str:
        """Where the rows came from, as reports show it."""
        return f"{self.path}[{self.split}]" if not _is_local(self.path) else str(Path(self.path).resolve())


@dataclass(frozen=True)
class LoadedMath:
    """The rows of one spec that can be scored, and how many could not."""

    spec: MathDataSpec
    rows: tuple[dict[str, Any], ...]
    skipped: int
    total: int


def as_spec(source: str | dict[str, Any] | MathDataSpec) -> MathDataSpec | None:
    """The spec of a bring-your-own source; None for a shipped name (validated by the caller)."""
    if isinstance(source, MathDataSpec):
        return source
    if isinstance(source, dict):
        return MathDataSpec(**source)
    return None


def check_source(source: str | dict[str, Any]) -> None:
    """Raise ValueError for an unknown shipped name or a bad spec (without loading anything)."""
    from asyncthink.envs.math_task import SOURCES

    if as_spec(source) is None and source not in SOURCES:
        raise ValueError(f"unknown math dataset {source!r}; known: {sorted(SOURCES)}, or a mapping with "
                         f"path, question_field, answer_field, split, extractor")


def load_source(source: str | dict[str, Any],
                directory: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Rows of a shipped name (from ``directory``) or of a spec, as fresh dicts (callers may reorder them)."""
    spec = as_spec(source)
    if spec is None:
        from asyncthink.envs.math_task import load_rows

        return load_rows(str(source), directory)
    return [dict(r) for r in load_spec(spec).rows]


@functools.lru_cache(maxsize=16)
def load_spec(spec: MathDataSpec) -> LoadedMath:
    """Read a spec's rows with ``datasets``; rows without a question or an extractable gold are counted."""
    table = _read(spec)
    missing = [f for f in (spec.question_field, spec.answer_field) if f not in table.column_names]
    if missing:
        raise ValueError(f"math dataset {spec.source}: no column(s) {missing}; it has {table.column_names}")
    rows, skipped = [], 0
    for index, raw in enumerate(table):
        row = to_row(raw, index, spec)
        if row is None:
            skipped += 1
        else:
            rows.append(row)
    if skipped:
        log.warning("math dataset %s: %d of %d rows have no question or no extractable gold answer "
                    "(extractor %r) and are left out", spec.source, skipped, len(table), spec.extractor)
    return LoadedMath(spec, tuple(rows), skipped, len(table))


def to_row(raw: dict[str, Any], index: int, spec: MathDataSpec) -> dict[str, Any] | None:
    """A task row (id, question, gold, source, the other scalar fields), or None if it cannot be scored."""
    question = raw.get(spec.question_field)
    gold = extract_gold(raw.get(spec.answer_field), spec.extractor)
    if not isinstance(question, str) or not question.strip() or gold is None:
        return None
    rid = raw.get(spec.id_field) if spec.id_field else None
    extra = {k: v for k, v in raw.items() if isinstance(v, str | int | float | bool)
             and k not in (spec.question_field, spec.answer_field, "id", "gold", "source")}
    return {**extra, "id": f"{spec.label}-{rid if rid is not None else index}", "question": question,
            "gold": gold, "source": spec.source, "raw_answer": str(raw.get(spec.answer_field))}


def extract_gold(value: Any, extractor: str) -> str | None:
    """The gold answer from an answer field; None when nothing usable is there."""
    from asyncthink.envs.math_task import last_boxed

    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float):
        text = str(int(value)) if value.is_integer() else repr(value)
    else:
        text = str(value)
    if extractor == "gsm8k":
        text = text.rsplit("####", 1)[1].replace(",", "") if "####" in text else ""
    elif extractor == "boxed":
        text = last_boxed(text) or ""
    elif extractor == "last_number":
        found = _LAST_NUMBER.findall(text)
        text = found[-1].replace(",", "") if found else ""
    text = text.strip()
    return text or None


# -- reading with `datasets`


def _is_local(path: str) -> bool:
    return Path(path).expanduser().exists()


def _read(spec: MathDataSpec):
    """One split of the dataset as a ``datasets.Dataset``."""
    import datasets

    path = Path(spec.path).expanduser()
    if not path.exists():
        return datasets.load_dataset(spec.path, spec.config_name, split=spec.split)
    if path.is_dir() and ((path / "state.json").exists() or (path / "dataset_dict.json").exists()):
        loaded = datasets.load_from_disk(str(path))
        return loaded[spec.split] if isinstance(loaded, datasets.DatasetDict) else loaded
    builder, files = _local_files(path, spec.split)
    return datasets.load_dataset(builder, data_files={"data": files}, split="data")


def _local_files(path: Path, split: str) -> tuple[str, list[str]]:
    """The ``datasets`` builder and files of a local file or folder; in a folder, files named after the split
    (``train.parquet``, ``test-00000-of-00001.parquet``) when there are any, else all of them."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in _LOCAL_FORMATS)
    if not files:
        raise ValueError(f"math dataset {path}: no parquet, JSON Lines or Arrow files in it")
    builders = {_LOCAL_FORMATS.get(p.suffix) for p in files}
    if None in builders or len(builders) > 1:
        raise ValueError(f"math dataset {path}: expected parquet, .jsonl/.json or .arrow files of one kind, "
                         f"got {sorted({p.suffix for p in files})}")
    named = [p for p in files if p.name.startswith(split)]
    return builders.pop(), [str(p) for p in (named or files)]
