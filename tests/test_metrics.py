"""Critical-path latency and concurrency on hand-computed DAGs, cross-checked with DESIGN's DP."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncthink.metrics import (
    critical_path_latency,
    episode_metrics,
    parallel_latency,
    simulate,
    thinking_concurrency,
)
from tests.builders import build_episode, parallel_episode

TWO_EARLY_LATE = [("gen", 2), ("fork", 1, 5), ("gen", 2), ("fork", 2, 6), ("gen", 10), ("join", 1, 3),
                  ("gen", 1), ("join", 2, 3), ("gen", 3)]


def test_no_fork_is_sequential():
    ep = build_episode([("gen", 10)])
    assert critical_path_latency(ep) == 10
    assert thinking_concurrency(ep) == 1.0
    assert episode_metrics(ep)["forks"] == 0


def test_two_workers_forked_early_joined_late():
    ep = build_episode(TWO_EARLY_LATE)
    assert critical_path_latency(ep) == 18
    assert thinking_concurrency(ep) == pytest.approx(29 / 18)
    m = episode_metrics(ep)
    assert m["total_tokens"] == 29 and m["worker_tokens"] == 11 and m["forks"] == 2 and m["joins"] == 2
    assert m["eta_over_capacity"] == pytest.approx(29 / 18 / 4)


def test_join_that_must_wait():
    ep = build_episode([("gen", 2), ("fork", 1, 20), ("gen", 3), ("join", 1, 2), ("gen", 4)])
    tl = simulate(ep)
    assert tl.latency == 26
    assert thinking_concurrency(ep) == pytest.approx(29 / 26)
    blocked = [s for s in tl.segments if s.kind == "blocked"]
    assert [(s.start, s.end) for s in blocked] == [(5, 22)]


def test_join_of_finished_worker_does_not_wait():
    ep = build_episode([("gen", 1), ("fork", 1, 3), ("gen", 10), ("join", 1, 4), ("gen", 2)])
    tl = simulate(ep)
    assert tl.latency == 13 and not [s for s in tl.segments if s.kind == "blocked"]


def test_nested_workers():
    worker = [("gen", 2), ("fork", 1, 10), ("gen", 1), ("join", 1, 2), ("gen", 3)]
    ep = build_episode([("gen", 1), ("fork", 1, worker), ("gen", 2), ("join", 1, 1), ("gen", 1)])
    tl = simulate(ep)
    assert tl.row_end["0.1.1"] == 13 and tl.row_end["0.1"] == 16 and tl.latency == 17
    assert thinking_concurrency(ep) == pytest.approx(20 / 17)
    assert episode_metrics(ep)["max_depth"] == 2


def test_nonzero_prefill_cost():
    ep = build_episode(TWO_EARLY_LATE)
    assert critical_path_latency(ep, prefill_cost=0.5) == 21
    # prefill steps are not generation: eta counts generated tokens only
    assert thinking_concurrency(ep, prefill_cost=0.5) == pytest.approx(29 / 21)


def test_wait_policy_queues_workers_when_pool_is_full():
    script = [("gen", 1), ("fork", 1, 10), ("gen", 1), ("fork", 2, 5), ("gen", 1), ("join", 1, 0), ("join", 2, 0),
              ("gen", 1)]
    ep = build_episode(script, capacity=2, pool_policy="wait")
    tl = simulate(ep)
    assert tl.row_start["0.2"] == 11 and tl.latency == 17
    assert [(s.start, s.end) for s in tl.segments if s.kind == "queued"] == [(2, 11)]
    assert critical_path_latency(build_episode(script, capacity=2, pool_policy="error")) == 12


def test_parallel_latency_is_longest_trace():
    ep = parallel_episode([5, 9, 7])
    assert critical_path_latency(ep) == 9 == parallel_latency([5, 9, 7])
    assert thinking_concurrency(ep) == pytest.approx(21 / 9)


# ------------------------------------------------------------ the DESIGN's one-level DP


def random_one_level_script(rng: random.Random) -> list:
    script, open_forks, next_index = [("gen", rng.randint(1, 5))], [], 1
    for _ in range(rng.randint(0, 12)):
        if open_forks and rng.random() < 0.5:
            k = open_forks.pop(rng.randrange(len(open_forks)))
            script.append(("join", k, rng.randint(0, 4)))
        else:
            script.append(("fork", next_index, rng.randint(1, 30)))
            open_forks.append(next_index)
            next_index += 1
        script.append(("gen", rng.randint(1, 8)))
    for k in open_forks:
        script += [("join", k, rng.randint(0, 4)), ("gen", rng.randint(1, 3))]
    return script


def dp_latency(script: list) -> int:
    """L_i = max(L_{i-1} + f_i, L_{j-1} + f_j[:fork k] + len(worker k)), fragments split at joins."""
    L, f, forked_in = [0], 0, {}
    for step in script:
        if step[0] == "gen":
            f += step[1]
        elif step[0] == "fork":
            forked_in[step[1]] = (len(L), f, step[2])  # fragment number j, tokens before the fork, worker length
        else:
            j, before, length = forked_in[step[1]]
            L.append(max(L[-1] + f, L[j - 1] + before + length))
            f = 0
    return L[-1] + f


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(min_value=0, max_value=10**9))
def test_simulation_equals_one_level_dp(seed):
    script = random_one_level_script(random.Random(seed))
    assert critical_path_latency(build_episode(script, capacity=64)) == dp_latency(script)
