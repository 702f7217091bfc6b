"""Evaluation figures on scripted records, against hand-computed values; bootstrap intervals."""

from __future__ import annotations

import pytest

from asyncthink.episode import Episode, EpisodeStatus, RowFormatError
from asyncthink.eval.stats import bootstrap_ci, cluster_keys, percentile, summarize
from asyncthink.protocol import FormatErrorCode
from tests.builders import build_episode

FORKED = [("gen", 2), ("fork", 1, 5), ("gen", 2), ("fork", 2, 6), ("gen", 10), ("join", 1, 3),
          ("gen", 1), ("join", 2, 3), ("gen", 3)]  # latency 18, 29 tokens, eta 29/18 (tests/test_metrics.py)


def _ep(script, problem, sample, score, wall, status=EpisodeStatus.OK, details=None) -> Episode:
    ep = build_episode(script)
    ep.episode_id, ep.problem_id, ep.score, ep.wall_s, ep.status = f"{problem}#{sample}", problem, score, wall, status
    if details is not None:
        ep.info["details"] = details
    return ep


def episodes() -> list[Episode]:
    correct = _ep([("gen", 10)], "a", 0, 1.0, 1.0, details={"at_least_1": 1.0, "at_least_2": 1.0})
    forked = _ep(FORKED, "a", 1, 0.5, 2.0, details={"at_least_1": 1.0, "at_least_2": 0.0})
    failed = _ep([("gen", 30)], "b", 0, 0.0, 3.0, EpisodeStatus.FORMAT_ERROR)
    failed.format_errors = [RowFormatError(FormatErrorCode.NO_ANSWER, "no answer", "0")]
    crashed = Episode(episode_id="c#0", mode="asyncthink", question="q", problem_id="c",
                      status=EpisodeStatus.ERROR, error="EngineError: boom", score=0.0)
    return [correct, forked, failed, crashed]


def test_figures_equal_hand_computed_values():
    s = summarize(episodes(), n_boot=200)
    assert s["n_episodes"] == 4 and s["n_problems"] == 3 and s["n_timed"] == 3
    assert s["statuses"] == {"ok": 2, "format_error": 1, "error": 1}
    assert s["accuracy"] == 0.25  # only a#0 scores 1; the engine error counts as wrong
    assert s["mean_score"] == pytest.approx((1 + 0.5) / 4)
    assert s["at_least"] == {"1": 0.5, "2": 0.25}  # episodes without details count as 0
    # latency over the three episodes that ran: 10, 18, 30 (the crashed one is left out)
    assert s["latency_mean"] == pytest.approx(58 / 3)
    assert s["latency_p50"] == 18 and s["latency_p90"] == pytest.approx(18 + 0.8 * 12)
    assert (s["wall_s_mean"], s["wall_s_p50"], s["wall_s_p90"]) == pytest.approx((2.0, 2.0, 2.8))
    assert s["total_tokens"] == 10 + 29 + 30 and s["tokens_per_episode"] == pytest.approx(23)
    assert s["eta"] == pytest.approx((1 + 29 / 18 + 1) / 3)
    assert s["eta_over_capacity"] == pytest.approx((1 + 29 / 18 + 1) / 3 / 4)
    assert s["forks_per_episode"] == pytest.approx(2 / 3) and s["joins_per_episode"] == pytest.approx(2 / 3)
    assert s["format_error_rate"] == 0.25 and s["format_errors"] == {"no_answer": 0.25} and s["errors"] == 1


def test_parallel_latency_is_the_longest_trace():
    from tests.builders import parallel_episode

    ep = parallel_episode([5, 12, 7])
    ep.score = 1.0
    s = summarize([ep], n_boot=50)
    assert s["latency_mean"] == 12 and s["tokens_per_episode"] == 24 and s["eta_over_capacity"] == pytest.approx(2 / 3)


def test_confidence_intervals_contain_the_point_estimates():
    eps = [_ep([("gen", 5 + 7 * k % 23)], f"p{k % 9}", k, float(k % 3 == 0), 0.1) for k in range(40)]
    s = summarize(eps, n_boot=500, ci=0.9)
    lo, hi = s["accuracy_ci"]
    assert lo <= s["accuracy"] <= hi and lo < hi
    lo, hi = s["latency_ci"]
    assert lo <= s["latency_mean"] <= hi and lo < hi


def test_bootstrap_resamples_problems_not_episodes():
    # problem A: 3 correct samples, B: 1 wrong. Resampling problems gives means 0 (BB), 3/4 (AB) or 1 (AA)
    # with chances 1/4, 1/2, 1/4, so the 30th and 70th percentiles are both 3/4. Resampling the four episodes
    # independently would put the 70th percentile at 1.
    assert bootstrap_ci([1, 1, 1, 0], ["A", "A", "A", "B"], n_boot=4000, ci=0.4) == [0.75, 0.75]
    assert bootstrap_ci([3.0, 3.0], ["A", "A"]) == [3.0, 3.0]
    assert bootstrap_ci([], []) is None


def _clustered(problem: str, cluster: str | None, score: float) -> Episode:
    ep = _ep([("gen", 10)], problem, 0, score, 0.1)
    ep.info["problem"] = {"id": problem} | ({} if cluster is None else {"cluster": cluster})
    return ep


def test_intervals_resample_clusters_and_say_how_many():
    # 12 number sets, each asked 5 times (5 problems whose outcomes move together): the interval must be
    # that of 12 independent problems, not of 60
    one = [_clustered(f"s{k}", f"set{k}", float(k % 2)) for k in range(12)]
    five = [_clustered(f"s{k}-{t}", f"set{k}", float(k % 2)) for k in range(12) for t in range(5)]
    s_one, s_five = summarize(one, n_boot=2000), summarize(five, n_boot=2000)
    assert (s_five["n_problems"], s_five["n_clusters"]) == (60, 12) and s_one["n_clusters"] == 12
    assert s_five["accuracy_ci"] == pytest.approx(s_one["accuracy_ci"])
    unclustered = [_clustered(f"s{k}-{t}", None, float(k % 2)) for k in range(12) for t in range(5)]
    s_naive = summarize(unclustered, n_boot=2000)
    assert s_naive["n_clusters"] == 60
    width = lambda s: s["accuracy_ci"][1] - s["accuracy_ci"][0]  # noqa: E731
    assert width(s_naive) < 0.6 * width(s_five)  # what treating duplicates as independent would claim


def test_a_record_without_its_problem_joins_its_siblings_cluster():
    with_cluster, crashed = _clustered("p", "set1", 1.0), _ep([("gen", 1)], "p", 1, 0.0, 0.1)
    lonely = _ep([("gen", 1)], "q", 0, 0.0, 0.1)  # a record from before clusters: its own cluster
    assert cluster_keys([crashed, with_cluster, lonely]) == {"p": "cluster:set1", "q": "problem:q"}


def test_empty_run_has_no_figures():
    s = summarize([])
    assert s["n_episodes"] == 0 and s["accuracy"] is None and s["latency_mean"] is None and s["accuracy_ci"] is None
    assert percentile([], 50) is None
