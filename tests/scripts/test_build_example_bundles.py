"""The example bundles are exactly what the script builds, and their data are plausible."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

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


def _same_content(built: Path, committed: Path) -> None:
    """What a bundle means, not the bytes a library version stamps into a file (parquet's
    footer names the pyarrow that wrote it): the same frame for tables, the same data for YAML."""
    if built.suffix == ".parquet":
        pd.testing.assert_frame_equal(pd.read_parquet(built), pd.read_parquet(committed), check_exact=True)
    elif built.suffix == ".csv":
        pd.testing.assert_frame_equal(pd.read_csv(built), pd.read_csv(committed), check_exact=True)
    elif built.suffix in (".yaml", ".yml"):
        assert yaml.safe_load(built.read_text()) == yaml.safe_load(committed.read_text())
    else:
        assert built.read_bytes() == committed.read_bytes()


def test_script_rebuilds_the_committed_bundles(rebuilt):
    built = sorted(p.relative_to(rebuilt) for p in rebuilt.rglob("*") if p.is_file())
    committed = sorted(p.relative_to(EXAMPLES) for p in EXAMPLES.rglob("*") if p.is_file())
    assert built == committed
    for rel in built:
        try:
            _same_content(rebuilt / rel, EXAMPLES / rel)
        except AssertionError as exc:
            raise AssertionError(f"{rel}: {exc}") from exc


def test_the_content_check_catches_a_changed_value_dtype_and_column(tmp_path):
    frame = pd.DataFrame(
        {"timestamp": pd.date_range("2025-06-01", periods=3, freq="15min", tz="UTC"), "load_kw": [1.0, 2.0, 3.0]}
    )
    frame.to_parquet(tmp_path / "a.parquet")
    changes = {
        "value": frame.assign(load_kw=[1.0, 2.0, 3.5]),
        "dtype": frame.assign(load_kw=frame["load_kw"].astype("float32")),
        "column": frame.rename(columns={"load_kw": "load"}),
    }
    for name, changed in changes.items():
        changed.to_parquet(tmp_path / f"{name}.parquet")
        with pytest.raises(AssertionError):
            _same_content(tmp_path / f"{name}.parquet", tmp_path / "a.parquet")
    (tmp_path / "a.yaml").write_text("a: 1\nb: [2, 3]\n")
    (tmp_path / "b.yaml").write_text("b: [2, 3]\na: 1\n")
    _same_content(tmp_path / "b.yaml", tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("a: 1\nb: [2, 4]\n")
    with pytest.raises(AssertionError):
        _same_content(tmp_path / "c.yaml", tmp_path / "a.yaml")


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
