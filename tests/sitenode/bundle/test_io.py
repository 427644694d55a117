import copy
import json

import pandas as pd
import pytest
from factories.bundles import RUN, SITE, series, write_bundle

from sitenode.bundle import load_bundle, write_outputs
from sitenode.bundle.io import read_dispatch
from sitenode.errors import InvalidInput
from sitenode.optimizer.solve import optimize_site


def fields(exc: pytest.ExceptionInfo[InvalidInput]) -> list[str]:
    return [v.field for v in exc.value.violations]


def test_loads_a_valid_bundle(tmp_path):
    inputs = load_bundle(write_bundle(tmp_path / "b"))
    problem = inputs.problem()
    assert problem.steps == 24 and problem.step_minutes == 60
    assert [s.session_id for s in inputs.sessions] == ["ev-1", "ev-2"]
    assert inputs.sessions[1].charger_id is None
    # night rate until 07:00 local (= UTC in January), day rate after
    assert problem.import_price[6] == 0.08 and problem.import_price[7] == 0.25


def test_csv_and_parquet_series_give_the_same_problem(tmp_path):
    a = load_bundle(write_bundle(tmp_path / "a", fmt="parquet")).problem()
    b = load_bundle(write_bundle(tmp_path / "b", fmt="csv")).problem()
    assert (a.load_kw == b.load_kw).all() and (a.pv_kw == b.pv_kw).all() and a.index.equals(b.index)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda s, r: s["battery"].update(capacity_kwh=-5), "site_config.battery.capacity_kwh"),
        (lambda s, r: s["battery"].update(soc_min_kwh=39), "site_config.battery.soc_min_kwh"),
        (lambda s, r: s["chargers"][1].update(kind="ev"), "site_config.chargers[1].kind"),
        (lambda s, r: s["grid"].update(import_limit=5), "site_config.grid.import_limit"),
        (lambda s, r: r["horizon"].update(step_minutes=7), "run_config.horizon.step_minutes"),
        (lambda s, r: r["horizon"].update(steps=60), "run_config.horizon"),
        (lambda s, r: r["tariff"]["energy_rates"].pop(), "run_config.tariff.energy_rates"),
    ],
)
def test_bad_config_names_the_field(tmp_path, mutate, field):
    site, run = copy.deepcopy(SITE), copy.deepcopy(RUN)
    mutate(site, run)
    with pytest.raises(InvalidInput) as exc:
        load_bundle(write_bundle(tmp_path / "b", site=site, run=run))
    assert field in fields(exc)


def test_bad_series_and_sessions_name_the_field(tmp_path):
    frame = series()
    frame.loc[5, "load_kw"] = float("nan")
    with pytest.raises(InvalidInput) as exc:
        load_bundle(write_bundle(tmp_path / "nan", frame=frame))
    assert fields(exc) == ["timeseries.load_kw"] and "row 5" in str(exc.value)

    gapped = series().drop(index=[10])
    with pytest.raises(InvalidInput, match="gap at row 10") as exc:
        load_bundle(write_bundle(tmp_path / "gap", frame=gapped, fmt="csv"))

    bad = (
        "session_id,arrival,departure,energy_kwh,max_kw,priority,charger_id\n"
        "x,2025-01-15T17:00:00Z,2025-01-15T16:00:00Z,4,11,1,cp-9\n"
    )
    with pytest.raises(InvalidInput) as exc:
        load_bundle(write_bundle(tmp_path / "sess", sessions=bad))
    assert fields(exc) == ["sessions[0].departure"]

    unknown = (
        "session_id,arrival,departure,energy_kwh,max_kw,priority,charger_id\n"
        "x,2025-01-15T17:00:00Z,2025-01-15T19:00:00Z,4,11,1,cp-9\n"
    )
    with pytest.raises(InvalidInput) as exc:
        load_bundle(write_bundle(tmp_path / "unk", sessions=unknown))
    assert fields(exc) == ["sessions[0].charger_id"]


def test_missing_files_and_bad_yaml(tmp_path):
    root = write_bundle(tmp_path / "b")
    (root / "site_config.yaml").write_text("site_id: [unclosed\n")
    with pytest.raises(InvalidInput) as exc:
        load_bundle(root)
    assert fields(exc) == ["site_config.yaml"]
    (root / "site_config.yaml").unlink()
    with pytest.raises(InvalidInput, match="missing"):
        load_bundle(root)


def test_write_outputs_round_trips_the_schedule(tmp_path):
    inputs = load_bundle(write_bundle(tmp_path / "b"))
    plan = optimize_site(inputs.problem())
    write_outputs(
        inputs,
        plan.schedule,
        {"total_cost": 1.0},
        plan.result.to_json(),
        command="test",
        solver_version=plan.result.solver_version,
    )
    back = read_dispatch(inputs.path)
    pd.testing.assert_frame_equal(back, plan.schedule, check_freq=False, check_index_type=False)
    meta = json.loads((inputs.path / "bundle_metadata.json").read_text())
    assert set(meta["input_hashes"]) == {"site_config.yaml", "run_config.yaml", "timeseries.parquet", "sessions.csv"}
    assert json.loads((inputs.path / "solve_stats.json").read_text())["status"] == "optimal"
