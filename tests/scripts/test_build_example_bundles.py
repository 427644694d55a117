"""The example bundles are exactly what the script builds, and their data are plausible."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sitenode.bundle import load_bundle

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "bundles"


def _script():
    spec = importlib.util.spec_from_file_location(
        "build_example_bundles", ROOT / "scripts" / "build_example_bundles.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundles")
    _script().build(out)
    return out


def test_script_rebuilds_the_committed_bytes(rebuilt):
    built = sorted(p.relative_to(rebuilt) for p in rebuilt.rglob("*") if p.is_file())
    committed = sorted(p.relative_to(EXAMPLES) for p in EXAMPLES.rglob("*") if p.is_file())
    assert built == committed
    for rel in built:
        assert (rebuilt / rel).read_bytes() == (EXAMPLES / rel).read_bytes(), rel


def test_demandlib_leaves_warning_filters_alone():
    import warnings

    before = list(warnings.filters)
    _script().bdew_profiles(2025, {"g1": 1000.0})
    assert warnings.filters == before


@pytest.mark.parametrize("name", ["office", "depot", "warehouse"])
def test_bundle_data_are_plausible(name):
    inputs = load_bundle(EXAMPLES / name)
    series = inputs.series
    assert len(series) == 288
    assert (np.diff(series.index.asi8) == 15 * 60 * 10**9).all()
    assert (series["load_kw"] > 0).all() and (series["pv_kw"] >= 0).all()
    local = series.index.tz_convert(inputs.site.timezone)
    night = (local.hour < 4) | (local.hour >= 22)
    assert (series.loc[night, "pv_kw"] == 0).all()
    problem = inputs.problem()
    for w in problem.sessions:
        assert 0 <= w.first < w.stop <= problem.steps


@pytest.mark.parametrize(("name", "kwp"), [("office", 150), ("warehouse", 300)])
def test_june_pv_peaks_near_its_rating(name, kwp):
    pv = load_bundle(EXAMPLES / name).series["pv_kw"]
    assert 0.5 * kwp <= pv.max() <= 0.95 * kwp


def test_depot_annual_scale():
    load = pd.read_csv(EXAMPLES / "depot" / "timeseries.csv")["load_kw"]
    # g3 scaled to 120 MWh a year averages about 13.7 kW
    assert 8 < load.mean() < 20
