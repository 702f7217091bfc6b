"""Programmatic AsyncThink traces for Sudoku (4x4 and 9x9), and matching sequential traces.

The organizer splits the grid by unit (rows, columns or boxes, chosen per
trace). A worker gets the current grid and one unit, and for each empty cell
writes the digits its row, column and box already hold and what is left; a
cell with one digit left is filled, and the worker returns the filled cells.
The organizer writes the grid updated with the returns and runs another wave
until the grid is full, then answers. Puzzles that single-candidate
elimination cannot finish are skipped. The sequential trace runs the same
elimination inline, unit by unit.
"""

from __future__ import annotations

import random

from asyncthink.envs.sudoku import BOX
from asyncthink.training.synth_trace import Trace


def _units(size: int, kind: str) -> list[list[int]]:
    bh, bw = BOX[size]
    if kind == "row":
        return [[r * size + c for c in range(size)] for r in range(size)]
    if kind == "column":
        return [[r * size + c for r in range(size)] for c in range(size)]
    return [[(br + r) * size + bc + c for r in range(bh) for c in range(bw)]
            for br in range(0, size, bh) for bc in range(0, size, bw)]


def _peers(cell: int, size: int) -> tuple[set[int], set[int], set[int]]:
    r, c = divmod(cell, size)
    bh, bw = BOX[size]
    box = {(r // bh * bh + i) * size + c // bw * bw + j for i in range(bh) for j in range(bw)}
    return {r * size + k for k in range(size)}, {k * size + c for k in range(size)}, box


def grid_text(cells: list[int], size: int) -> str:
    return "\n".join("".join(str(d) if d else "." for d in cells[r * size:(r + 1) * size]) for r in range(size))


def unit_work(cells: list[int], unit: list[int], size: int) -> tuple[list[str], dict[int, int]]:
    """Elimination lines for the empty cells of ``unit`` and the cells it fills."""
    lines, filled = [], {}
    for cell in unit:
        if cells[cell]:
            continue
        row, col, box = (sorted({cells[p] for p in group if cells[p]}) for group in _peers(cell, size))
        left = sorted(set(range(1, size + 1)) - set(row) - set(col) - set(box))
        r, c = divmod(cell, size)
        lines.append(f"r{r + 1}c{c + 1}: row {_digits(row)} col {_digits(col)} box {_digits(box)} left {_digits(left)}")
        if len(left) == 1:
            filled[cell] = left[0]
    return lines, filled


def _digits(ds: list[int]) -> str:
    return "".join(map(str, ds)) or "-"


def _cells_text(filled: dict[int, int], size: int) -> str:
    return " ".join(f"r{c // size + 1}c{c % size + 1}={d}" for c, d in sorted(filled.items())) or "none"


def asyncthink_trace(puzzle: str, rng: random.Random, capacity: int) -> Trace | None:
    """Waves of unit workers until the grid is full; ``None`` if elimination gets stuck."""
    size = int(len(puzzle) ** 0.5)
    cells = [int(ch) if ch.isdigit() else 0 for ch in puzzle]
    kind = rng.choice(["row", "column", "box"])
    trace, text, index, waves = Trace(""), f"by {kind}\n", 1, []
    while 0 in cells:
        open_units = [u for u in _units(size, kind) if any(cells[c] == 0 for c in u)]
        useful = [u for u in open_units if unit_work(cells, u, size)[1]]
        if not useful:
            return None  # single candidates alone cannot go on
        rng.shuffle(open_units)
        first = rng.choice(useful)
        wave = [first] + [u for u in open_units if u is not first][: rng.randint(0, capacity - 2)]
        grid, progress = grid_text(cells, size), {}
        for unit in wave:
            lines, filled = unit_work(cells, unit, size)
            sub = f"{grid}\nfill {kind} {_unit_name(unit, size, kind)}"
            text += f"<FORK-{index}>{sub}</FORK-{index}>"
            trace.workers[index] = "\n".join(lines) + f"\n<RETURN>{_cells_text(filled, size)}</RETURN>"
            trace.subqueries[index] = sub
            progress.update(filled)
            index += 1
        text += "".join(f"<JOIN-{k}>" for k in range(index - len(wave), index))
        if not progress:
            return None
        for cell, d in progress.items():
            cells[cell] = d
        text += "\n" + grid_text(cells, size) + "\n"
        waves.append(str(len(wave)))
    trace.organizer = text + f"<ANSWER>\n{grid_text(cells, size)}\n</ANSWER>"
    trace.topology = f"{kind}:" + "-".join(waves)
    return trace


def sequential_trace(puzzle: str, rng: random.Random) -> Trace | None:
    """The same elimination inline, one unit after another, until the grid is full."""
    size = int(len(puzzle) ** 0.5)
    cells = [int(ch) if ch.isdigit() else 0 for ch in puzzle]
    kind = rng.choice(["row", "column", "box"])
    text, passes = f"by {kind}\n", 0
    while 0 in cells:
        passes += 1
        before = cells.count(0)
        for unit in _units(size, kind):
            lines, filled = unit_work(cells, unit, size)
            for cell, d in filled.items():
                cells[cell] = d
            if lines:
                text += "\n".join(lines) + "\n"
        if cells.count(0) == before:
            return None
    return Trace(text + f"<ANSWER>\n{grid_text(cells, size)}\n</ANSWER>", topology=f"seq{kind}:{passes}")


def _unit_name(unit: list[int], size: int, kind: str) -> int:
    if kind == "row":
        return unit[0] // size + 1
    if kind == "column":
        return unit[0] % size + 1
    return _units(size, "box").index(unit) + 1
