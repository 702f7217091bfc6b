"""Exact arithmetic over ``+ - * /`` and parentheses, parsed without ``eval``.

Expressions come from a model, so nothing in them is trusted. The tokenizer
accepts ASCII digits, ``+ - * / ( )`` and spaces, nothing else (no Unicode
digits, no ``**``, no names). The parser is a shunting-yard loop, not a
recursion, so ten thousand nested parentheses cannot overflow the stack; it
stops early at limits on characters, tokens, nesting depth and digits per
number. Values are ``Fraction`` s, computed as the tree is built; a division
by zero or a numerator/denominator beyond ``max_abs`` is an error.

There is no unary minus: every ``-`` subtracts. The countdown rules combine
the given numbers with binary operators, they never negate one.

    >>> tree = parse("(3 + 5) * 3")
    >>> tree.value, leaves(tree), to_str(tree)
    (Fraction(24, 1), [3, 5, 3], '(3 + 5) * 3')
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from fractions import Fraction

OPS = "+-*/"
_FUNCS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}


class ArithError(ValueError):
    """An expression that is malformed, too big, or divides by zero."""


@dataclass(frozen=True)
class Limits:
    """Bounds every parse stays within, whatever the input."""

    max_chars: int = 400
    """Longest expression text accepted (characters, spaces included)."""
    max_tokens: int = 120
    """Most numbers, operators and parentheses in one expression."""
    max_depth: int = 32
    """Deepest parenthesis nesting."""
    max_digits: int = 9
    """Longest number literal."""
    max_abs: int = 10**18
    """Largest numerator or denominator of any intermediate value."""


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Num:
    """A number literal; a leaf of the tree."""

    value: int


@dataclass(frozen=True)
class BinOp:
    """``left op right``; ``value`` is computed once, when the node is built."""

    op: str
    left: Expr
    right: Expr
    value: Fraction


Expr = Num | BinOp


def apply(op: str, a: Fraction, b: Fraction, limits: Limits = DEFAULT_LIMITS) -> Fraction:
    """``a op b`` exactly; raises ``ArithError`` on division by zero or a value beyond the limits."""
    if op == "/" and b == 0:
        raise ArithError(f"division by zero in {a} / {b}")
    # operands are bounded by max_abs, so computing first and checking after stays cheap
    v = _FUNCS[op](a, b)
    if abs(v.numerator) > limits.max_abs or v.denominator > limits.max_abs:
        raise ArithError(f"intermediate value beyond {limits.max_abs}: {a} {op} {b}")
    return v


def combine(op: str, left: Expr, right: Expr, limits: Limits = DEFAULT_LIMITS) -> BinOp:
    """A new node ``left op right`` with its value."""
    return BinOp(op, left, right, apply(op, value(left), value(right), limits))


def value(e: Expr) -> Fraction:
    return Fraction(e.value) if isinstance(e, Num) else e.value


def tokenize(text: str, limits: Limits = DEFAULT_LIMITS) -> list[str | int]:
    """Numbers (as ints) and single-character operators/parentheses; spaces dropped."""
    if len(text) > limits.max_chars:
        raise ArithError(f"expression longer than {limits.max_chars} characters ({len(text)})")
    tokens: list[str | int] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if "0" <= ch <= "9":  # not str.isdigit: that accepts Unicode digits like '٣'
            j = i
            while j < len(text) and "0" <= text[j] <= "9":
                j += 1
            if j - i > limits.max_digits:
                raise ArithError(f"number {text[i:j][:20]!r} longer than {limits.max_digits} digits")
            tokens.append(int(text[i:j]))
            i = j
            continue
        if ch in OPS or ch in "()":
            tokens.append(ch)
        elif ch not in " \t":
            raise ArithError(f"character {ch!r} at {i} is not a digit, + - * / ( ) or space")
        i += 1
        if len(tokens) > limits.max_tokens:
            raise ArithError(f"more than {limits.max_tokens} tokens")
    return tokens


def parse(text: str, limits: Limits = DEFAULT_LIMITS) -> Expr:
    """The tree of ``text``; raises ``ArithError`` for anything not a well-formed expression."""
    tokens = tokenize(text, limits)
    if not tokens:
        raise ArithError("empty expression")
    out: list[Expr] = []  # operands
    ops: list[str] = []  # operators and open parentheses
    expect_operand, depth = True, 0
    for tok in tokens:
        if expect_operand:
            if isinstance(tok, int):
                out.append(Num(tok))
                expect_operand = False
            elif tok == "(":
                ops.append(tok)
                depth += 1
                if depth > limits.max_depth:
                    raise ArithError(f"parentheses nested deeper than {limits.max_depth}")
            else:
                raise ArithError(f"expected a number or '(' but found {tok!r}")
        elif tok == ")":
            while ops and ops[-1] != "(":
                _reduce(out, ops, limits)
            if not ops:
                raise ArithError("unbalanced ')'")
            ops.pop()
            depth -= 1
        elif isinstance(tok, str) and tok in OPS:
            while ops and ops[-1] != "(" and _PRECEDENCE[ops[-1]] >= _PRECEDENCE[tok]:
                _reduce(out, ops, limits)  # left-associative: equal precedence reduces first
            ops.append(tok)
            expect_operand = True
        else:
            raise ArithError(f"expected an operator or ')' but found {tok!r}")
    if expect_operand:
        raise ArithError("expression ends with an operator or '('")
    while ops:
        if ops[-1] == "(":
            raise ArithError("unbalanced '('")
        _reduce(out, ops, limits)
    return out[0]


def _reduce(out: list[Expr], ops: list[str], limits: Limits) -> None:
    op = ops.pop()
    right, left = out.pop(), out.pop()
    out.append(combine(op, left, right, limits))


def evaluate(text: str, limits: Limits = DEFAULT_LIMITS) -> Fraction:
    return value(parse(text, limits))


def leaves(e: Expr) -> list[int]:
    """The number literals, left to right (iterative: trees from callers may be deep)."""
    found, stack = [], [e]
    while stack:
        node = stack.pop()
        if isinstance(node, Num):
            found.append(node.value)
        else:
            stack += [node.right, node.left]
    return found


def to_str(e: Expr) -> str:
    """The expression with only the parentheses its tree needs."""
    if isinstance(e, Num):
        return str(e.value)
    p = _PRECEDENCE[e.op]
    left, right = to_str(e.left), to_str(e.right)
    if isinstance(e.left, BinOp) and _PRECEDENCE[e.left.op] < p:
        left = f"({left})"
    # the right operand keeps them at equal precedence too, so parse(to_str(t)) == t:
    # a - (b - c) needs them, and a + (b + c) is a different tree from a + b + c
    if isinstance(e.right, BinOp) and _PRECEDENCE[e.right.op] <= p:
        right = f"({right})"
    return f"{left} {e.op} {right}"
