"""Ranking requests: one user's features over N candidates, on the scenario engine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import workbench as wb
from workbench.cli import main
from workbench.errors import InputError, ParameterError
from workbench.scenarios import VirtualClock, scenario, slo
from workbench.scenarios.ranking import request_inputs

# the conftest's latency model: a batch of b rows takes 1 ms + 0.25 ms * b
BASE_MS, PER_SAMPLE_MS = 1.0, 0.25
ROWS = 500


class Ranker(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.items = nn.EmbeddingBag(ROWS, 4, mode="sum")
        self.head = nn.Linear(3 + 4, 1)

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([user, self.items(item)], 1))


@pytest.fixture(scope="module")
def ranker() -> wb.Model:
    args = (torch.zeros(2, 3), torch.zeros(2, 1, dtype=torch.long))
    return wb.load(Ranker(), example_inputs=args, input_names=["user", "item"], name="ranker")


def test_a_request_is_one_user_over_its_candidates(ranker: wb.Model) -> None:
    staged = request_inputs(ranker, None, requests=3, candidates=200, user_inputs=["user"])
    user = staged["user"].reshape(3, 200, 3)
    assert (user == user[:, :1]).all()  # the same user on every candidate of a request
    assert not np.array_equal(user[0, 0], user[1, 0])  # requests are different users
    items = staged["item"].reshape(3, 200)
    assert items.min() >= 0 and items.max() < ROWS
    assert len(np.unique(items[0])) > 20  # candidates differ (Zipf: some repeat)


def test_a_single_stream_request_scores_all_its_candidates_in_one_call(
    clock: VirtualClock, ranker: wb.Model
) -> None:
    result = scenario(
        ranker, "single-stream", "latency-model", clock=clock, warmup=1, candidates=100,
        min_queries=50, min_duration_s=0.1,
    )  # fmt: skip
    per_request_ms = BASE_MS + PER_SAMPLE_MS * 100
    np.testing.assert_allclose(result.queries["latency_ms"], per_request_ms)
    assert result.p99_ms == pytest.approx(per_request_ms)
    # throughput counts items: 100 candidates per 26 ms request
    assert result.throughput_per_s == pytest.approx(100 * 1e3 / per_request_ms)
    assert result.settings["candidates"] == 100 and result.settings["user_inputs"] == ["user"]
    back = type(result).from_json(result.to_json())
    assert back.settings["candidates"] == 100 and back.samples == 100 * len(result.queries)


def test_a_ranking_result_shows_requests_and_items_per_second(
    clock: VirtualClock, ranker: wb.Model
) -> None:
    run = dict(clock=clock, warmup=1, min_queries=10, min_duration_s=0.1)
    ranking = scenario(ranker, "single-stream", "latency-model", candidates=100, **run)
    plain = scenario(ranker, "single-stream", "latency-model", **run)
    text, page = ranking.summary(), ranking._repr_html_()
    assert "items/s" in text and "samples/s" not in text
    assert f"{len(ranking.queries):,} requests, {ranking.samples:,} items" in text
    assert "latency per request" in text
    assert "items/s" in page and "requests / items" in page and "samples/s" not in page
    assert json.loads(ranking.to_json())["metrics"]["throughput_unit"] == "items/s"
    assert "samples/s" in plain.summary() and "samples/s" in plain._repr_html_()
    assert plain.metrics()["throughput_unit"] == "samples/s"


def test_a_server_holds_its_p99_budget_per_request_or_says_so(
    clock: VirtualClock, ranker: wb.Model
) -> None:
    kwargs = dict(clock=clock, warmup=1, candidates=200, min_queries=200, min_duration_s=1.0)
    # a request of 200 candidates takes 51 ms alone; at 2 requests/s few ever queue
    easy = scenario(
        ranker, "server", "latency-model", rate_per_s=2, target_latency_ms=150, **kwargs
    )
    assert easy.valid and BASE_MS + PER_SAMPLE_MS * 200 <= easy.p99_ms <= 150
    assert easy.throughput_per_s == pytest.approx(200 * len(easy.queries) / easy.duration_s)
    hard = scenario(
        ranker, "server", "latency-model", rate_per_s=10, target_latency_ms=40, **kwargs
    )
    assert not hard.valid and any("over the target 40 ms" in r for r in hard.reasons)


def test_slo_reports_requests_per_second_and_items_per_second(
    clock: VirtualClock, ranker: wb.Model
) -> None:
    result = slo(
        ranker, 300.0, backends=["latency-model"], clock=clock, warmup=1, steps=4,
        min_queries=50, min_duration_s=0.5, candidates=200,
    )  # fmt: skip
    (row,) = result.table.itertuples()
    assert row.max_rate_per_s > 0
    points = result.points[result.points["passed"]]
    assert (points["throughput_per_s"] > 150 * points["rate_per_s"]).all()
    assert result.settings["candidates"] == 200
    assert "ranking requests of 200 candidates" in result.summary()


def test_bad_ranking_settings_get_one_line(clock: VirtualClock, ranker: wb.Model) -> None:
    run = dict(clock=clock, warmup=1)
    with pytest.raises(InputError, match=r"user_inputs \['who'\] are not inputs of ranker"):
        scenario(
            ranker, "single-stream", "latency-model", candidates=10, user_inputs=["who"], **run
        )
    with pytest.raises(InputError, match="give candidates= too"):
        scenario(ranker, "single-stream", "latency-model", user_inputs=["user"], **run)
    with pytest.raises(ParameterError, match="candidates"):
        scenario(ranker, "single-stream", "latency-model", candidates=0, **run)


def test_workbench_scenario_candidates_on_the_dlrm_sample(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rank.json"
    args = ["scenario", "dlrm", "--candidates", "100", "--user-inputs", "dense,ids_0"]
    code = main([*args, "--min-queries", "5", "--min-duration", "0.01", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "items/s" in printed and "samples/s" not in printed
    data = json.loads(out.read_text())
    assert data["metrics"]["throughput_unit"] == "items/s"
    assert data["settings"]["candidates"] == 100
    assert data["settings"]["user_inputs"] == ["dense", "ids_0"]
    back = wb.ScenarioResult.from_json(out)
    assert set(back.queries["samples"]) == {100}  # a query's samples are its candidates
