"""Programmatic AsyncThink traces for multi-solution countdown, and matching sequential traces.

The organizer splits the search by its first step: with three numbers, a
branch is a pair to combine first (``"24 from 3 5 | 7"``); with four or more,
a branch is a first operation (``"24 from 3+5=8 | 7 9"``). A worker searches
its branch step by step: every whole, non-negative intermediate is written as
an equation (``9-4=5``, the larger operand first for ``-`` and ``/``), then
every last step with the remaining number (``5+3=8 5-3=2 5*3=15``), each
checked against the target (``!`` marks a hit); it returns only the marked
expressions, over the original numbers. Fractions and negatives are never
written: they cannot be a whole target's last step, and the classes they
reach midway are nearly all reached by a whole-number order too. Equations
rather than bare results keep each operand beside the result a small model
computes.

Topologies vary on purpose (a single template makes the policy rigid): how
many branches are forked at once, in what order they are joined, whether the
organizer writes a plan first, searches a branch itself while its workers
run, or stops forking once it has enough solutions. The sequential trace
searches the same branches in the same order, inline.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from fractions import Fraction

from asyncthink.envs import arith
from asyncthink.envs.countdown import canonical_str
from asyncthink.training.synth_trace import TopologyOptions, Trace

OPS = ("+", "-", "*", "/")  # - and / take the larger operand first, so every value written is whole and >= 0


@dataclass
class Branch:
    """A first step of the search and everything below it."""

    subquery: str
    lines: list[str]
    hits: list[str]


# ------------------------------------------------------------ arithmetic as text


def _apply(op: str, x: arith.Expr, y: arith.Expr) -> arith.Expr | None:
    """``x op y`` as a tree, or ``None`` when undefined (division by zero)."""
    try:
        return arith.combine(op, x, y)
    except (arith.ArithError, ZeroDivisionError):
        return None


def _ordered(op: str, x: arith.Expr, y: arith.Expr) -> tuple[arith.Expr, arith.Expr]:
    return (y, x) if op in "-/" and arith.value(x) < arith.value(y) else (x, y)


def combine_whole(op: str, x: arith.Expr, y: arith.Expr) -> arith.Expr | None:
    """``x op y`` (larger operand first for ``-`` and ``/``) if it is a whole number >= 0, else ``None``."""
    e = _apply(op, *_ordered(op, x, y))
    return e if e is not None and arith.value(e).denominator == 1 and arith.value(e) >= 0 else None


def _text(v: Fraction) -> str:
    return str(v.numerator) if v.denominator == 1 else f"{v.numerator}/{v.denominator}"


def _expr(e: arith.Expr) -> str:
    return arith.to_str(e).replace(" ", "")


def equation(op: str, x: arith.Expr, y: arith.Expr, e: arith.Expr) -> str:
    """``13*3=39``: the step written whole, so the operands sit beside the result the model computes."""
    a, b = _ordered(op, x, y)
    return f"{_text(arith.value(a))}{op}{_text(arith.value(b))}={_text(arith.value(e))}"


def search_lines(items: list[arith.Expr], target: int) -> tuple[list[str], list[str]]:
    """Search over ``items`` (2 or more), as text lines and the hit expressions."""
    if len(items) == 2:
        return _last_step(items[0], items[1], target)
    lines, hits = [], []
    for i, j in itertools.combinations(range(len(items)), 2):
        rest = [e for k, e in enumerate(items) if k not in (i, j)]
        pair, found = pair_lines(items[i], items[j], rest, target)
        lines += pair
        hits += found
    return lines, hits


def pair_lines(a: arith.Expr, b: arith.Expr, rest: list[arith.Expr], target: int) -> tuple[list[str], list[str]]:
    """The pair ``a, b`` combined first, every whole non-negative way, then the rest."""
    lines, hits = [], []
    for op in OPS:
        e = combine_whole(op, a, b)
        if e is None:
            continue
        sub_lines, sub_hits = search_lines([e, *rest], target)
        head = equation(op, a, b, e)
        lines += [f"{head}: {sub_lines[0]}"] if len(rest) == 1 else [head, *("  " + s for s in sub_lines)]
        hits += sub_hits
    return lines, hits


def _last_step(x: arith.Expr, y: arith.Expr, target: int) -> tuple[list[str], list[str]]:
    """Every whole result of the last two values, each checked against the target (``!`` marks a hit)."""
    results, hits = [], []
    for op in OPS:
        e = combine_whole(op, x, y)
        if e is None:
            continue  # a fraction, or a division by zero: never a whole target
        hit = arith.value(e) == target
        results.append(equation(op, x, y, e) + ("!" if hit else ""))
        if hit:
            hits.append(_expr(e))
    return [" ".join(results) or "none"], hits


# ------------------------------------------------------------ branches


def branches(numbers: list[int], target: int) -> list[Branch]:
    """Every first step of the search (pairs for 3 numbers, first operations for more), with its worker's work."""
    leaves = [arith.Num(n) for n in numbers]
    out = []
    for i, j in itertools.combinations(range(len(numbers)), 2):
        rest = [leaves[k] for k in range(len(numbers)) if k not in (i, j)]
        rest_text = " ".join(str(numbers[k]) for k in range(len(numbers)) if k not in (i, j))
        if len(numbers) == 3:
            lines, hits = pair_lines(leaves[i], leaves[j], rest, target)
            out.append(Branch(f"{target} from {numbers[i]} {numbers[j]} | {rest_text}", lines, hits))
            continue
        for op in OPS:
            e = combine_whole(op, leaves[i], leaves[j])
            if e is not None:
                lines, hits = search_lines([e, *rest], target)
                step = equation(op, leaves[i], leaves[j], e)
                out.append(Branch(f"{target} from {step} | {rest_text}", lines, hits))
    return out


def worker_text(branch: Branch) -> str:
    found = "; ".join(branch.hits) if branch.hits else "none"
    return "\n".join(branch.lines) + f"\n<RETURN>{found}</RETURN>"


def distinct(expressions: list[str], required: int) -> list[str]:
    """The first ``required`` expressions that are distinct solutions."""
    seen, out = set(), []
    for e in expressions:
        key = canonical_str(e)
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out[:required]


def answer_text(found: list[str], target: int) -> str:
    return "<ANSWER>" + "\n".join(f"{e}={target}" for e in found) + "</ANSWER>"


# ------------------------------------------------------------ topologies


def asyncthink_trace(numbers: list[int], target: int, required: int, rng: random.Random,
                     opts: TopologyOptions) -> Trace | None:
    """An organizer that forks branches in waves and answers; ``None`` if it would not find enough solutions."""
    todo = _order(branches(numbers, target), rng, opts)
    stop_early, full = rng.random() < opts.p_stop_early, rng.random() < opts.p_full_waves
    text = f"{len(todo)} branches\n" if rng.random() < opts.p_plan else ""
    trace, found, index, waves = Trace(""), [], 1, []
    while todo and not (stop_early and len(distinct(found, required)) >= required):
        size = opts.capacity - 1 if full else rng.randint(1, opts.capacity - 1)
        wave, todo = todo[:size], todo[size:]
        for b in wave:
            text += f"<FORK-{index}>{b.subquery}</FORK-{index}>"
            trace.workers[index], trace.subqueries[index] = worker_text(b), b.subquery
            index += 1
        mine = todo.pop(0) if todo and rng.random() < opts.p_self_search else None
        if mine is not None:
            text += "\n" + mine.subquery + "\n" + "\n".join(mine.lines) + "\n"
        joins = list(range(index - len(wave), index))
        rng.shuffle(joins) if rng.random() < 0.5 else None
        text += "".join(f"<JOIN-{k}>" for k in joins)
        found += [h for b in wave for h in b.hits] + (mine.hits if mine else [])
        waves.append(f"{len(wave)}{'+s' if mine else ''}")
    answer = distinct(found, required)
    if len(answer) < required:
        return None
    trace.organizer = text + "\n" + answer_text(answer, target)
    trace.topology = "-".join(waves)
    return trace


def sequential_trace(numbers: list[int], target: int, required: int, rng: random.Random,
                     opts: TopologyOptions) -> Trace | None:
    """The same search, every branch inline, in the same kind of order."""
    todo = _order(branches(numbers, target), rng, opts)
    stop_early = rng.random() < opts.p_stop_early
    text, found, done = "", [], 0
    for b in todo:
        if stop_early and len(distinct(found, required)) >= required:
            break
        text += b.subquery + "\n" + "\n".join(b.lines) + "\n"
        found += b.hits
        done += 1
    answer = distinct(found, required)
    if len(answer) < required:
        return None
    return Trace(text + answer_text(answer, target), topology=f"seq{done}")


def _order(items: list[Branch], rng: random.Random, opts: TopologyOptions) -> list[Branch]:
    items = list(items)
    if rng.random() < opts.p_shuffle:
        rng.shuffle(items)
    return items
