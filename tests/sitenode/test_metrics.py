import pandas as pd
import pytest
from factories.problems import make_problem

from sitenode.metrics import compute_metrics, metrics_document
from sitenode.schedule import (
    CHARGE,
    CURTAIL,
    DISCHARGE,
    GRID_EXPORT,
    GRID_IMPORT,
    SOC,
    check_schedule,
    new_schedule,
)


def problem():
    run = {"tariff": {"demand_charges": [{"name": "w", "rate_per_kw": 10.0, "schedule": {"start_time": "01:00", "end_time": "01:59"}}]}}
    site = {"grid": {"import_limit_kw": 20, "breach_penalty_per_kwh": 3.0},
            "battery": {"capacity_kwh": 20, "soc_initial_kwh": 10, "degradation_cost_per_kwh": 0.02},
            "pv": {"curtailable": True}, "flexible_loads": [{"id": "m", "max_kw": 5, "value_per_kwh": 0.05}]}
    sessions = [{"session_id": "ev", "arrival": 0, "departure": 2, "energy_kwh": 10, "max_kw": 11}]
    return make_problem(site, load=[10, 10], pv=[0, 8], prices=[0.1, 0.3], export_prices=[0.0, 0.05], sessions=sessions,
                        run=run, extra={"carbon_kg_per_kwh": [0.5, 0.2]})


def schedule(p) -> pd.DataFrame:
    s = new_schedule(p)
    # step 0: load 10 + ev 6 + flex 5 + charge 4 = 25 import; step 1: load 10 + ev 2 = 12,
    # from pv 8 − curtail 1 = 7, discharge 2, import 3, export 0
    s[GRID_IMPORT] = [25.0, 3.0]
    s["ev_ev_kw"] = [6.0, 2.0]
    s["flex_m_kw"] = [5.0, 0.0]
    s[CHARGE] = [4.0, 0.0]
    s[DISCHARGE] = [0.0, 2.0]
    s[CURTAIL] = [0.0, 1.0]
    s[GRID_EXPORT] = [0.0, 0.0]
    s[SOC] = [14.0, 12.0]
    return s


def test_every_metric_by_hand():
    p = problem()
    s = schedule(p)
    assert check_schedule(p, s, limits=False) == []
    m = compute_metrics(p, s)
    assert m.energy_cost == pytest.approx(25 * 0.1 + 3 * 0.3)  # 3.4
    assert m.export_revenue == pytest.approx(0)
    assert m.demand_cost == pytest.approx(10 * 3)  # window holds hour 1 only
    assert m.degradation_cost == pytest.approx(0.02 * (4 + 2))
    assert m.flex_value == pytest.approx(0.05 * 5)
    assert m.carbon_kg == pytest.approx(25 * 0.5 + 3 * 0.2)
    assert m.peak_import_kw == 25
    assert m.ev_energy_kwh == 8 and m.ev_shortfall_kwh == pytest.approx(2)
    assert m.breach_kwh == pytest.approx(5) and m.breach_cost == pytest.approx(15)
    assert m.total_cost == pytest.approx(3.4 + 30 + 0.12 - 0.25)
    doc = metrics_document(m, m, "GBP")
    assert doc["savings"]["total_cost"] == 0 and doc["baseline"]["breach_kwh"] == pytest.approx(5)


def test_check_schedule_catches_broken_schedules():
    p = problem()
    s = schedule(p)
    s.loc[s.index[0], GRID_IMPORT] = 20.0
    assert any("balance" in v for v in check_schedule(p, s, limits=False))
    s = schedule(p)
    s[SOC] = [15.0, 12.0]
    assert any("soc_kwh does not follow" in v for v in check_schedule(p, s, limits=False))
    s = schedule(p)
    assert any("import limit" in v for v in check_schedule(p, s, limits=True))
