"""Sudoku, 4x4 and 9x9, generated with exactly one solution.

A grid is a string of ``size * size`` characters, row by row: digits
``1..size`` and ``.`` for a blank. Generation fills an empty grid with a
randomized solver, then visits the cells in random order and blanks each one
whose removal keeps the solution unique (the solver counts solutions up to
2), stopping at ``clues`` givens; a grid that cannot get that low is dropped
and another is tried. Fewer clues make a harder puzzle.

The question shows the puzzle one row per line, ``.`` for a blank. The
answer is the completed grid, one row per line, digits only; extraction
tolerates spaces, commas, ``|`` and brackets between digits and ignores
lines that are not a row (``+---+`` rules, headings). A grid scores 1 iff it
keeps every given and every row, column and box holds ``1..size`` once; it is
not compared with the stored solution (with one solution, that is the same).

A puzzle belongs to the test split iff its hash falls in the first
``test_fraction`` of buckets (``sampling.hash_split``), so train and test
never share a puzzle. Each puzzle is its own cluster for confidence
intervals: the givens make the puzzle, and a shared solution grid says little
(every 4x4 grid is one of only two up to symmetry).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from asyncthink.envs import sampling
from asyncthink.task import Problem, Task

BOX = {4: (2, 2), 9: (3, 3)}  # box height, width
DEFAULT_CLUES = {4: 6, 9: 30}
MIN_CLUES = {4: 4, 9: 17}  # fewer givens never have a unique solution
MAX_ANSWER_CHARS = 10_000


# -- solving


def _units(size: int) -> list[list[int]]:
    """For each cell, the index of its row, column and box constraint."""
    bh, bw = BOX[size]
    return [[r, size + c, 2 * size + (r // bh) * (size // bw) + c // bw]
            for r in range(size) for c in range(size)]


def _search(grid: list[int], size: int, limit: int, rng: random.Random | None) -> list[list[int]]:
    """Up to ``limit`` solutions of ``grid`` (0 = blank), by backtracking on the most
    constrained cell; ``rng`` shuffles candidate order (for generation)."""
    units = _units(size)
    used = [0] * (3 * size)  # bitmask of digits per row, column, box
    for i, d in enumerate(grid):
        if d:
            bit = 1 << d
            if any(used[u] & bit for u in units[i]):
                return []  # the givens already clash
            for u in units[i]:
                used[u] |= bit
    full = sum(1 << d for d in range(1, size + 1))
    found: list[list[int]] = []
    _backtrack(grid[:], units, used, full, limit, rng, found)
    return found


def _backtrack(grid, units, used, full, limit, rng, found) -> None:
    """Try each candidate of the blank with the fewest; a blank with none ends the branch."""
    best, best_free = -1, None
    for i, d in enumerate(grid):
        if not d:
            free = full & ~(used[units[i][0]] | used[units[i][1]] | used[units[i][2]])
            if best_free is None or free.bit_count() < best_free.bit_count():
                best, best_free = i, free
                if free.bit_count() <= 1:
                    break
    if best < 0:
        found.append(grid[:])
        return
    digits = [d for d in range(1, full.bit_length()) if best_free >> d & 1]
    if rng:
        rng.shuffle(digits)
    for d in digits:
        grid[best] = d
        for u in units[best]:
            used[u] |= 1 << d
        _backtrack(grid, units, used, full, limit, rng, found)
        for u in units[best]:
            used[u] &= ~(1 << d)
        grid[best] = 0
        if len(found) >= limit:
            return


def count_solutions(puzzle: str, limit: int = 2) -> int:
    """Solutions of ``puzzle``, counted up to ``limit``."""
    size = grid_size(puzzle)
    return len(_search(to_cells(puzzle), size, limit, None))


def solve(puzzle: str) -> str | None:
    """A solution of ``puzzle`` as a digit string, or None."""
    size = grid_size(puzzle)
    found = _search(to_cells(puzzle), size, 1, None)
    return "".join(map(str, found[0])) if found else None


# -- grids as strings


def grid_size(grid: str) -> int:
    size = round(len(grid) ** 0.5)
    if size not in BOX or size * size != len(grid):
        raise ValueError(f"a grid has 16 or 81 cells, got {len(grid)}: {grid[:90]!r}")
    return size


def to_cells(grid: str) -> list[int]:
    return [0 if ch in ".0" else int(ch) for ch in grid]


def rows_text(grid: str) -> str:
    size = grid_size(grid)
    return "\n".join(grid[r * size:(r + 1) * size] for r in range(size))


def pattern_grid(size: int) -> str:
    """A fixed valid complete grid (shifted rows), used to show the answer form."""
    bh, bw = BOX[size]
    return "".join(str((bw * (r % bh) + r // bh + c) % size + 1) for r in range(size) for c in range(size))


def is_valid_solution(grid: str, puzzle: str) -> bool:
    """``grid`` is complete, keeps every given of ``puzzle``, and breaks no row, column or box."""
    size = grid_size(puzzle)
    if len(grid) != len(puzzle) or any(p != "." and p != g for p, g in zip(puzzle, grid, strict=True)):
        return False
    digits = set("123456789"[:size])
    if any(ch not in digits for ch in grid):
        return False
    groups: dict[int, set[str]] = {}
    for i, u in enumerate(_units(size)):
        for k in u:
            groups.setdefault(k, set()).add(grid[i])
    return all(len(g) == size for g in groups.values())


def parse_grid(text: str | None, size: int) -> str | None:
    """The grid in ``text`` as a digit string (see the module docstring), or None."""
    if not text or len(text) > MAX_ANSWER_CHARS:
        return None
    rows = []
    for line in text.splitlines():
        cells = re.sub(r"[\s,|\[\]]", "", line)
        if len(cells) == size and all("0" <= ch <= "9" for ch in cells):
            rows.append(cells)
    if len(rows) >= size:
        return "".join(rows[-size:])  # a restated grid: the last one is the answer
    flat = re.sub(r"[\s,|\[\]]", "", text)
    if len(flat) == size * size and all("0" <= ch <= "9" for ch in flat):
        return flat
    return None


# -- generation


@dataclass(frozen=True)
class SudokuConfig:
    """Options of ``make("sudoku", ...)``."""

    size: int = 4
    """Side of the grid: 4 (2x2 boxes) or 9 (3x3 boxes)."""
    clues: int | None = None
    """Givens per puzzle (fewer is harder); ``None``: 6 for 4x4, 30 for 9x9."""
    test_fraction: float = 0.5
    """Share of puzzle hash buckets that belong to the test split."""
    default_size: int = 200
    """Puzzles per split when ``dataset`` gets no ``n``."""

    def __post_init__(self):
        if self.size not in BOX:
            raise ValueError(f"size must be 4 or 9, got {self.size!r}")
        if not MIN_CLUES[self.size] <= self.n_clues <= self.size**2:
            raise ValueError(f"clues for {self.size}x{self.size} must be in "
                             f"{MIN_CLUES[self.size]}..{self.size**2}, got {self.clues!r}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction!r}")

    @property
    def n_clues(self) -> int:
        return DEFAULT_CLUES[self.size] if self.clues is None else self.clues


def puzzle_split(puzzle: str, test_fraction: float) -> str:
    """"test" or "train", fixed by the puzzle (its givens and blanks)."""
    return sampling.hash_split(puzzle, test_fraction)


def generate(size: int, clues: int, rng: random.Random, attempts: int = 100) -> tuple[str, str]:
    """(puzzle, solution) with exactly one solution and ``clues`` givens."""
    for _ in range(attempts):
        solution = _search([0] * size * size, size, 1, rng)[0]
        cells = solution[:]
        order = list(range(size * size))
        rng.shuffle(order)
        givens = size * size
        for i in order:
            if givens == clues:
                break
            cells[i] = 0
            if len(_search(cells, size, 2, None)) == 1:
                givens -= 1
            else:
                cells[i] = solution[i]
        if givens == clues:
            puzzle = "".join(str(d) if d else "." for d in cells)
            return puzzle, "".join(map(str, solution))
    raise ValueError(f"no {size}x{size} puzzle with {clues} clues in {attempts} attempts; try more clues")


def question(puzzle: str) -> str:
    size = grid_size(puzzle)
    bh, bw = BOX[size]
    return (f"Solve this {size}x{size} Sudoku ('.' is an empty cell; boxes are {bh}x{bw}):\n"
            f"{rows_text(puzzle)}")


class SudokuTask(Task):
    name = "sudoku"

    def __init__(self, cfg: SudokuConfig):
        self.cfg = cfg

    def dataset(self, split: str = "test", n: int | None = None, seed: int = 0) -> list[Problem]:
        if split not in ("train", "test"):
            raise ValueError(f"sudoku has splits 'train' and 'test', got {split!r}")
        size, clues = self.cfg.size, self.cfg.n_clues
        rng = random.Random(f"sudoku-{size}-{clues}-{split}-{seed}")
        want = self.cfg.default_size if n is None else n

        def draw() -> tuple[str, str] | None:
            puzzle, solution = generate(size, clues, rng)
            return (puzzle, solution) if puzzle_split(puzzle, self.cfg.test_fraction) == split else None

        drawn = sampling.draw_distinct(draw, lambda ps: ps[0], want, f"{split} puzzles for {self.cfg}")
        return [{"id": f"sudoku{size}-{split}-{seed}-{k}", "question": question(puzzle), "gold": solution,
                 "puzzle": puzzle, "size": size, "clues": clues} for k, (puzzle, solution) in enumerate(drawn)]

    def instruction(self) -> str:
        size = self.cfg.size
        bh, bw = BOX[size]
        example = rows_text(pattern_grid(size))
        return (
            f"Fill the empty cells ('.') of the {size}x{size} grid with digits 1-{size} so that every row, "
            f"every column and every {bh}x{bw} box holds each digit exactly once; keep the given digits.\n"
            f"Answer form: inside <ANSWER>...</ANSWER> write the completed grid, one row per line, "
            f"{size} digits per row and nothing else. The form (of a complete grid, not this one's answer):\n"
            f"<ANSWER>\n{example}\n</ANSWER>"
        )

    def worker_instruction(self) -> str:
        return ("Work out the cells or constraints you are asked about. Return the digits you are sure of, "
                "as 'row r, column c: d' lines, inside <RETURN>...</RETURN>.")

    def extract_answer(self, answer_text: str | None) -> str | None:
        grid = parse_grid(answer_text, self.cfg.size)
        return rows_text(grid) if grid else None

    def score(self, answer: str | None, problem: Problem) -> float:
        try:
            puzzle = str(problem["puzzle"])
            grid = parse_grid(answer, grid_size(puzzle))
            return float(grid is not None and is_valid_solution(grid, puzzle))
        except Exception:  # a malformed problem row must not crash a batch
            return 0.0

    def normalize(self, answer: str | None) -> str | None:
        """The grid's digits, row by row, in one line."""
        return parse_grid(answer, self.cfg.size)


def make(**options) -> SudokuTask:
    """The Sudoku task; options are the fields of ``SudokuConfig``."""
    return SudokuTask(SudokuConfig(**options))
