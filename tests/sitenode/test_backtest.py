import copy

import pandas as pd
import pytest
from factories.bundles import RUN, write_bundle

from sitenode.backtest import run_backtest
from sitenode.bundle import load_bundle
from sitenode.optimizer.solve import optimize_site
from sitenode.schedule import check_schedule, ev_column


class Perfect:
    """Test-only forecast: the actual future, read from the bundle's own series."""

    def __init__(self, series: pd.DataFrame) -> None:
        self.series = series

    def forecast(self, history, index):
        return self.series.loc[index, ["load_kw", "pv_kw"]]


def bundle(tmp_path, **backtest):
    run = copy.deepcopy(RUN)
    run["backtest"] = {"window_steps": 12, "reoptimize_every_steps": 3, **backtest}
    return load_bundle(write_bundle(tmp_path / "b", run=run))


def test_realized_schedule_is_physical_and_serves_the_evs(tmp_path):
    inputs = bundle(tmp_path)
    problem = inputs.problem()
    seen = []
    result = run_backtest(inputs, progress=lambda done, total: seen.append((done, total)))
    assert check_schedule(problem, result.schedule) == []
    for w in problem.sessions:
        assert result.schedule[ev_column(w.session_id)].sum() * problem.dt_h == pytest.approx(w.need_kwh, abs=1e-6)
    assert seen[-1] == (8, 8) and len(result.solves) == 8
    assert result.metrics.total_cost <= result.baseline.total_cost


def test_perfect_foresight_beats_persistence_and_matches_one_solve(tmp_path):
    inputs = bundle(tmp_path)
    perfect = run_backtest(inputs, provider=Perfect(inputs.series))
    blind = run_backtest(inputs)
    assert perfect.metrics.total_cost <= blind.metrics.total_cost + 1e-6
    assert perfect.load_mae_kw == 0 and blind.load_mae_kw > 0

    whole = bundle(tmp_path / "whole", window_steps=24, reoptimize_every_steps=24)
    once = run_backtest(whole, provider=Perfect(whole.series))
    assert len(once.solves) == 1
    assert once.metrics.total_cost == pytest.approx(optimize_site(whole.problem()).result.objective, abs=1e-6)
