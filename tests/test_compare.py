"""Paired comparisons over problems: hand-computed differences, intervals that exclude or cover 0,
unmatched problems left out, engine errors out of latency, clusters resampled whole, and the report's section."""

from __future__ import annotations

import pytest

from asyncthink.episode import Episode, EpisodeStatus
from asyncthink.eval.compare import compare, comparison_table
from tests.builders import build_episode


def _ep(problem: str, sample: int, score: float, tokens: int = 10, status=EpisodeStatus.OK,
        cluster: str | None = None) -> Episode:
    ep = build_episode([("gen", tokens)])
    ep.episode_id, ep.problem_id, ep.score, ep.status = f"{problem}#{sample}", problem, score, status
    if cluster is not None:  # as the executor records a task's problem fields
        ep.info["problem"] = {"id": problem, "cluster": cluster}
    return ep


def test_difference_is_the_mean_per_problem_difference():
    a = [_ep("p", 0, 0.0), _ep("p", 1, 1.0), _ep("q", 0, 0.0)]  # p: 0.5, q: 0
    b = [_ep("p", 0, 1.0), _ep("q", 0, 1.0), _ep("q", 1, 1.0), _ep("r", 0, 1.0)]  # p: 1, q: 1, r unmatched
    c = compare(a, b, "accuracy", n_boot=500)
    assert (c.problems, c.unmatched) == (2, 1)
    assert c.mean_a == pytest.approx(0.25) and c.mean_b == pytest.approx(1.0) and c.diff == pytest.approx(0.75)
    assert c.ci[0] == pytest.approx(0.5) and c.ci[1] == pytest.approx(1.0)
    assert not c.significant and c.verdict == "too few clusters (< 10)"  # two problems prove nothing


def test_a_consistent_gain_is_significant_and_noise_is_not():
    a = [_ep(f"p{k}", 0, 0.0) for k in range(40)]
    better = [_ep(f"p{k}", 0, float(k % 4 != 0)) for k in range(40)]  # 30 of 40 gained, none lost
    noise = [_ep(f"p{k}", 0, float(k % 2)) for k in range(40)]
    mixed = [_ep(f"p{k}", 0, float(k % 2 == 0)) for k in range(40)]  # the opposite half of noise
    assert compare(a, better).significant and compare(a, better).diff == pytest.approx(0.75)
    c = compare(noise, mixed)
    assert c.diff == pytest.approx(0.0) and c.ci[0] < 0 < c.ci[1] and not c.significant


def test_latency_leaves_engine_errors_out():
    a = [_ep("p", 0, 1.0, tokens=20), _ep("q", 0, 1.0, tokens=30)]
    b = [_ep("p", 0, 1.0, tokens=12), _ep("q", 0, 0.0, tokens=1, status=EpisodeStatus.ERROR)]
    c = compare(a, b, "latency")
    assert c.problems == 1 and c.diff == pytest.approx(-8.0)


def test_table_says_whether_the_interval_covers_zero():
    a = [_ep(f"p{k}", 0, 0.0) for k in range(12)]
    b = [_ep(f"p{k}", 0, 1.0) for k in range(12)]
    rows = comparison_table([compare(a, b, a_label="SFT", b_label="RL")])
    assert "| accuracy | SFT | RL | 12 | 12 | 0.0 | 100.0 | +100.0 pp [+100.0, +100.0] | significant |" in rows
    with pytest.raises(ValueError, match="'speed'"):
        compare([], [], "speed")


def test_compare_command_pairs_two_evaluation_folders(tmp_path):
    from typer.testing import CliRunner

    from asyncthink.cli import app
    from asyncthink.episode import write_jsonl

    for name, score in (("sft", 0.0), ("rl", 1.0)):
        (tmp_path / name / "records" / "countdown").mkdir(parents=True)
        write_jsonl(tmp_path / name / "records" / "countdown" / "asyncthink-512.jsonl",
                    [_ep(f"p{k}", 0, score if k % 2 else 0.0) for k in range(10)])
    result = CliRunner().invoke(app, ["compare", str(tmp_path / "sft"), str(tmp_path / "rl"), "-m", "accuracy",
                                      "--out", str(tmp_path / "cmp.md")])
    assert result.exit_code == 0, result.output
    cell = "sft:countdown/asyncthink-512 | rl:countdown/asyncthink-512"
    assert f"{cell} | 10 | 10 | 0.0 | 50.0 | +50.0 pp" in result.output
    assert (tmp_path / "cmp.md").read_text().count("| significant |") == 1


def test_duplicates_within_a_cluster_do_not_narrow_the_interval():
    # 15 clusters whose gain is 1 or 0 (b - a); copying each problem 4 times inside its cluster must give the
    # interval of the 15 clusters, while the same 60 problems taken as independent would give a narrower one
    gain = [float(k % 3 != 0) for k in range(15)]
    a1 = [_ep(f"c{k}", 0, 0.0, cluster=f"c{k}") for k in range(15)]
    b1 = [_ep(f"c{k}", 0, gain[k], cluster=f"c{k}") for k in range(15)]
    a4 = [_ep(f"c{k}-{t}", 0, 0.0, cluster=f"c{k}") for k in range(15) for t in range(4)]
    b4 = [_ep(f"c{k}-{t}", 0, gain[k], cluster=f"c{k}") for k in range(15) for t in range(4)]
    one, four = compare(a1, b1), compare(a4, b4)
    assert (four.problems, four.clusters) == (60, 15) and four.diff == pytest.approx(one.diff)
    assert four.ci == pytest.approx(one.ci)
    naive = compare([_ep(f"c{k}-{t}", 0, 0.0) for k in range(15) for t in range(4)],
                    [_ep(f"c{k}-{t}", 0, gain[k]) for k in range(15) for t in range(4)])
    assert naive.clusters == 60 and naive.ci[1] - naive.ci[0] < 0.75 * (four.ci[1] - four.ci[0])
    assert "| 60 | 15 |" in comparison_table([four])[2]


def test_too_few_clusters_give_no_verdict_however_many_problems():
    a = [_ep(f"p{k}", 0, 0.0, cluster=f"set{k % 3}") for k in range(30)]
    b = [_ep(f"p{k}", 0, 1.0, cluster=f"set{k % 3}") for k in range(30)]
    c = compare(a, b)
    assert (c.problems, c.clusters) == (30, 3) and c.ci == pytest.approx((1.0, 1.0))
    assert not c.significant and c.verdict == "too few clusters (< 10)"
