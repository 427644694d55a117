"""site_config.yaml: every field constraint is refused with its path and the value it got."""

from __future__ import annotations

from typing import Any

import pytest

from sitenode.errors import InvalidInput
from sitenode.model.site import SiteConfig
from sitenode.model.validation import parse

BATTERY = {"capacity_kwh": 500, "soc_initial_kwh": 250, "soc_min_kwh": 50, "soc_max_kwh": 475}
CHARGER = {"id": "cp-01", "max_kw": 22, "kind": "ac"}
FLEX = {"id": "miner-1", "min_kw": 0, "max_kw": 50, "value_per_kwh": 0.09, "priority": 4}

# The example of shared/BUNDLE.md, which must stay valid.
EXAMPLE: dict[str, Any] = {
    "site_id": "depot-north",
    "timezone": "Europe/London",
    "grid": {"import_limit_kw": 400, "export_limit_kw": 100, "breach_margin": 0.2, "breach_penalty_per_kwh": 10.0},
    "battery": {
        **BATTERY,
        "soc_final_min_kwh": 250,
        "max_charge_kw": 250,
        "max_discharge_kw": 250,
        "charge_efficiency": 0.95,
        "discharge_efficiency": 0.95,
        "degradation_cost_per_kwh": 0.01,
    },
    "pv": {"curtailable": True},
    "chargers": [
        {"id": "cp-01", "max_kw": 22, "kind": "ac"},
        {"id": "cp-02", "max_kw": 150, "kind": "dc"},
        {"id": "cp-03", "max_kw": 22, "kind": "ac"},
    ],
    "flexible_loads": [FLEX],
    "circuits": [
        {"id": "panel-a", "max_kw": 60, "members": ["cp-01", "cp-03"]},
        {"id": "main-ev", "max_kw": 200, "members": ["panel-a", "cp-02"]},
    ],
}


def violations(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidInput) as exc:
        parse(SiteConfig, data, "site_config")
    return {v.field: v.description for v in exc.value.violations}


def test_the_bundle_example_is_valid_and_defaults_fill_in():
    site = parse(SiteConfig, EXAMPLE, "site_config")
    assert site.circuit_leaves()["main-ev"] == {"cp-01", "cp-02", "cp-03"}
    bare = parse(SiteConfig, {"site_id": "s", "battery": {"capacity_kwh": 40, "soc_initial_kwh": 10}})
    b = bare.battery
    assert b is not None
    assert (b.soc_min_kwh, b.soc_max, b.soc_final_min) == (0, 40, 10)
    assert (b.charge_efficiency, b.discharge_efficiency, b.degradation_cost_per_kwh) == (1, 1, 0)
    assert b.max_charge_kw is None and b.max_discharge_kw is None
    assert bare.timezone == "UTC" and bare.grid.import_limit_kw is None and bare.grid.breach_margin == 0
    assert bare.pv is None and bare.chargers == [] and bare.flexible_loads == []


@pytest.mark.parametrize(
    ("patch", "field", "text"),
    [
        # site
        ({"site_id": ""}, "site_id", "must not be empty, got ''"),
        (
            {"site_id": "depot north"},
            "site_id",
            "must start with a letter or digit and hold only letters, digits and _ . : -, got 'depot north'",
        ),
        ({"site_id": "-depot"}, "site_id", "must start with a letter or digit"),
        ({"site_id": "x" * 65}, "site_id", "must be at most 64 characters, got 'xxxx"),
        ({"site_id": 7}, "site_id", "must be a string, got 7"),
        (
            {"timezone": "Mars/Olympus"},
            "timezone",
            "must be an IANA timezone such as Europe/London, got 'Mars/Olympus'",
        ),
        ({"assets": {}}, "assets", "is not a known field"),
        # grid
        ({"grid": {"import_limit_kw": 0}}, "grid.import_limit_kw", "must be > 0, got 0"),
        ({"grid": {"import_limit_kw": -400}}, "grid.import_limit_kw", "must be > 0, got -400"),
        ({"grid": {"import_limit_kw": float("inf")}}, "grid.import_limit_kw", "must be a finite number, got inf"),
        ({"grid": {"import_limit_kw": "lots"}}, "grid.import_limit_kw", "must be a number, got 'lots'"),
        ({"grid": {"export_limit_kw": -1}}, "grid.export_limit_kw", "must be >= 0, got -1"),
        ({"grid": {"breach_margin": -0.1}}, "grid.breach_margin", "must be >= 0, got -0.1"),
        ({"grid": {"breach_margin": 1.5}}, "grid.breach_margin", "must be <= 1, got 1.5"),
        ({"grid": {"breach_penalty_per_kwh": -2}}, "grid.breach_penalty_per_kwh", "must be >= 0, got -2"),
        ({"grid": {"import_limit": 400}}, "grid.import_limit", "is not a known field"),
        # battery: its own fields
        ({"battery": {**BATTERY, "capacity_kwh": -5}}, "battery.capacity_kwh", "must be > 0, got -5"),
        ({"battery": {**BATTERY, "capacity_kwh": 0}}, "battery.capacity_kwh", "must be > 0, got 0"),
        ({"battery": {"capacity_kwh": 500}}, "battery.soc_initial_kwh", "is required"),
        ({"battery": {**BATTERY, "soc_initial_kwh": -1}}, "battery.soc_initial_kwh", "must be >= 0, got -1"),
        ({"battery": {**BATTERY, "soc_min_kwh": -1}}, "battery.soc_min_kwh", "must be >= 0, got -1"),
        ({"battery": {**BATTERY, "max_charge_kw": -250}}, "battery.max_charge_kw", "must be >= 0, got -250"),
        ({"battery": {**BATTERY, "max_discharge_kw": -250}}, "battery.max_discharge_kw", "must be >= 0, got -250"),
        ({"battery": {**BATTERY, "charge_efficiency": 1.2}}, "battery.charge_efficiency", "must be <= 1, got 1.2"),
        ({"battery": {**BATTERY, "charge_efficiency": 0}}, "battery.charge_efficiency", "must be > 0, got 0"),
        ({"battery": {**BATTERY, "discharge_efficiency": 95}}, "battery.discharge_efficiency", "must be <= 1, got 95"),
        (
            {"battery": {**BATTERY, "degradation_cost_per_kwh": -0.01}},
            "battery.degradation_cost_per_kwh",
            "must be >= 0, got -0.01",
        ),
        # battery: fields against each other (the issue's own example first)
        ({"battery": {**BATTERY, "soc_min_kwh": 500}}, "battery.soc_min_kwh", "must be <= soc_max_kwh (475), got 500"),
        ({"battery": {**BATTERY, "soc_max_kwh": 600}}, "battery.soc_max_kwh", "must be <= capacity_kwh (500), got 600"),
        (
            {"battery": {**BATTERY, "soc_initial_kwh": 10}},
            "battery.soc_initial_kwh",
            "must lie in [soc_min_kwh, soc_max_kwh] = [50, 475], got 10",
        ),
        ({"battery": {**BATTERY, "soc_initial_kwh": 480}}, "battery.soc_initial_kwh", "got 480"),
        (
            {"battery": {**BATTERY, "soc_final_min_kwh": 480}},
            "battery.soc_final_min_kwh",
            "must lie in [soc_min_kwh, soc_max_kwh] = [50, 475], got 480",
        ),
        ({"battery": {**BATTERY, "soc_final_min_kwh": 20}}, "battery.soc_final_min_kwh", "got 20"),
        ({"battery": {"capacity_kwh": 40, "soc_initial_kwh": 50}}, "battery.soc_initial_kwh", "[0, 40], got 50"),
        # pv
        ({"pv": {"curtailable": "maybe"}}, "pv.curtailable", "must be true or false, got 'maybe'"),
        ({"pv": {"curtailable": True, "kwp": 5}}, "pv.kwp", "is not a known field"),
        # chargers
        ({"chargers": [{"max_kw": 22}]}, "chargers[0].id", "is required"),
        ({"chargers": [{**CHARGER, "id": "cp 01"}]}, "chargers[0].id", "must start with a letter or digit"),
        ({"chargers": [{**CHARGER, "max_kw": 0}]}, "chargers[0].max_kw", "must be > 0, got 0"),
        (
            {"chargers": [{**CHARGER, "kind": "wireless"}]},
            "chargers[0].kind",
            "must be one of 'ac' or 'dc', got 'wireless'",
        ),
        ({"chargers": [CHARGER, {**CHARGER, "max_kw": 50}]}, "chargers[1].id", "duplicates chargers[0], got 'cp-01'"),
        ({"chargers": "cp-01"}, "chargers", "must be a list, got 'cp-01'"),
        # flexible loads
        ({"flexible_loads": [{**FLEX, "min_kw": -1}]}, "flexible_loads[0].min_kw", "must be >= 0, got -1"),
        ({"flexible_loads": [{**FLEX, "max_kw": 0}]}, "flexible_loads[0].max_kw", "must be > 0, got 0"),
        ({"flexible_loads": [{**FLEX, "min_kw": 60}]}, "flexible_loads[0].min_kw", "must be <= max_kw (50), got 60"),
        (
            {"flexible_loads": [{**FLEX, "value_per_kwh": float("inf")}]},
            "flexible_loads[0].value_per_kwh",
            "must be a finite number",
        ),
        ({"flexible_loads": [{**FLEX, "priority": 0}]}, "flexible_loads[0].priority", "must be >= 1, got 0"),
        ({"flexible_loads": [{**FLEX, "priority": 11}]}, "flexible_loads[0].priority", "must be <= 10, got 11"),
        (
            {"chargers": [CHARGER], "flexible_loads": [{**FLEX, "id": "cp-01"}]},
            "flexible_loads[0].id",
            "duplicates chargers[0], got 'cp-01'",
        ),
        # circuits
        (
            {"circuits": [{"id": "c", "max_kw": 0, "members": ["cp-01"]}], "chargers": [CHARGER]},
            "circuits[0].max_kw",
            "must be > 0, got 0",
        ),
        ({"circuits": [{"id": "c", "max_kw": 5, "members": []}]}, "circuits[0].members", "must not be empty, got []"),
        (
            {"circuits": [{"id": "c", "max_kw": 5, "members": ["ghost"]}]},
            "circuits[0].members[0]",
            "must name a charger, flexible load or other circuit, got 'ghost'",
        ),
        ({"circuits": [{"id": "c", "max_kw": 5, "members": ["c"]}]}, "circuits[0].members[0]", "got 'c'"),
        (
            {"circuits": [{"id": "a", "max_kw": 5, "members": ["b"]}, {"id": "b", "max_kw": 5, "members": ["a"]}]},
            "circuits[0].members",
            "circuit 'a' contains itself",
        ),
    ],
)
def test_errors_name_the_field_path_and_the_value(patch: dict[str, Any], field: str, text: str) -> None:
    found = violations({"site_id": "s", **patch})
    assert f"site_config.{field}" in found, found
    assert text in found[f"site_config.{field}"]


def test_a_missing_site_id_is_required():
    assert violations({}) == {"site_config.site_id": "is required"}


def test_every_violation_is_reported_at_once():
    found = violations(
        {
            "site_id": "s",
            "grid": {"import_limit_kw": -1, "export_limit_kw": -1},
            "chargers": [{**CHARGER, "max_kw": -22}],
        }
    )
    assert set(found) == {
        "site_config.grid.import_limit_kw",
        "site_config.grid.export_limit_kw",
        "site_config.chargers[0].max_kw",
    }


def test_cross_checks_report_every_battery_bound_together():
    found = violations(
        {
            "site_id": "s",
            "battery": {"capacity_kwh": 100, "soc_initial_kwh": 150, "soc_max_kwh": 120, "soc_final_min_kwh": 130},
        }
    )
    assert found == {
        "site_config.battery.soc_max_kwh": "must be <= capacity_kwh (100), got 120",
        "site_config.battery.soc_initial_kwh": "must lie in [soc_min_kwh, soc_max_kwh] = [0, 120], got 150",
        "site_config.battery.soc_final_min_kwh": "must lie in [soc_min_kwh, soc_max_kwh] = [0, 120], got 130",
    }


def test_a_config_is_frozen():
    site = parse(SiteConfig, EXAMPLE)
    with pytest.raises(Exception, match="frozen"):
        site.site_id = "other"  # type: ignore[misc]
