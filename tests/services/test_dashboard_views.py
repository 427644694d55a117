"""The dashboard's pure parts: flows for the diagram, views of API replies, edit forms."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from services.convert import ts
from services.dashboard import forms, views
from services.stubs.gridmesh.v1 import common_pb2, portfolio_pb2, sitenode_pb2
from sitenode.errors import InvalidInput

NOW = datetime(2025, 6, 20, 18, 0, tzinfo=UTC)


def point(**kw: float) -> portfolio_pb2.TelemetryPoint:
    return portfolio_pb2.TelemetryPoint(seq=1, at=ts(NOW), mode=portfolio_pb2.NODE_LINK_MODE_PORTFOLIO, **kw)


def test_flows_feed_consumers_in_module_11_order_and_balance():
    live = views.Live.of(
        point(
            grid_import_kw=30, load_kw=50, pv_kw=40, battery_charge_kw=0, battery_discharge_kw=10, ev_kw=22, flex_kw=8
        )
    )
    flows, totals = views.flows_of(live)
    got = {(f.source, f.sink): f.kw for f in flows}
    # PV goes to the facility first, then battery discharge finishes it and starts the fleet
    assert got == {
        ("solar", "facility"): 40.0,
        ("battery", "facility"): 10.0,
        ("grid", "fleet"): 22.0,
        ("grid", "mining"): 8.0,
    }
    assert sum(f.kw for f in flows if f.source == "grid") == pytest.approx(totals["grid"])
    assert totals["fleet"] == 22.0 and totals["battery"] == 10.0


def test_export_comes_from_solar_never_from_the_grid():
    live = views.Live.of(point(grid_export_kw=15, load_kw=5, pv_kw=25, battery_charge_kw=5))
    flows, _ = views.flows_of(live)
    got = {(f.source, f.sink): f.kw for f in flows}
    assert got == {("solar", "facility"): 5.0, ("solar", "battery_charging"): 5.0, ("solar", "export"): 15.0}
    assert views.flows_of(None) == ((), {})


def site_info(site_id: str, *, today: bool, connected: bool = True) -> portfolio_pb2.SiteInfo:
    info = portfolio_pb2.SiteInfo(
        site_id=site_id, connected=connected, latest=point(grid_import_kw=10, pv_kw=3), schedule_state="ACKED"
    )
    info.mode = portfolio_pb2.NODE_LINK_MODE_PORTFOLIO
    if today:
        info.today.CopyFrom(portfolio_pb2.SiteDay(currency="EUR", cost=12.5, bau_cost=20.0, steps=8))
    return info


def test_portfolio_view_sums_today_and_reads_events_against_live_import():
    sites = portfolio_pb2.ListSitesResponse(
        sites=[site_info("a", today=True), site_info("b", today=True), site_info("c", today=False)]
    )
    state = portfolio_pb2.GetPortfolioStateResponse(now=ts(NOW), import_kw=30)
    state.latest_solve.CopyFrom(
        portfolio_pb2.SolveReport(
            solve_id="s1",
            at=ts(NOW),
            status="optimal",
            all_hold=True,
            events=[portfolio_pb2.EventCheck(event_id="peak", holds=True)],
        )
    )
    start, end = ts(datetime(2025, 6, 20, 17, 30, tzinfo=UTC)), ts(datetime(2025, 6, 20, 18, 30, tzinfo=UTC))
    past = ts(datetime(2025, 6, 20, 17, 0, tzinfo=UTC))
    events = portfolio_pb2.ListFlexEventsResponse(
        events=[
            portfolio_pb2.FlexEvent(
                event_id="peak", kind=portfolio_pb2.FLEX_KIND_CAP_AT, kw=25, start=start, end=end, site_ids=["a", "b"]
            ),
            portfolio_pb2.FlexEvent(event_id="over", kind=portfolio_pb2.FLEX_KIND_CAP_AT, kw=5, start=past, end=start),
        ]
    )
    view = views.portfolio_view(sites, state, events)
    assert view.totals.cost_today == 25.0 and view.totals.bau_today == 40.0 and view.totals.currency == "EUR"
    assert [e.event_id for e in view.events] == ["peak"]  # ended events are not shown
    assert view.events[0].active and view.events[0].headroom_kw == 5.0 and view.events[0].planned_holds is True
    assert view.sites[2].today is None and view.sites[0].mode == "portfolio"
    json.dumps(view, default=lambda v: v.__dict__)  # everything in it is plain data


def test_settings_are_the_operators_where_set_else_the_nodes_own():
    got = portfolio_pb2.GetSiteResponse(site=portfolio_pb2.SiteInfo(site_id="a"))
    got.snapshot.run_config_json = json.dumps(
        {
            "objective": {"cost": 1.0, "carbon": 0.1, "peak": 0.0},
            "priorities": {"fleet": 1, "facility": 2, "battery": 3, "mining": 4, "export": 5},
        }
    )
    own = views.settings_of(got)
    assert own is not None and not own.from_operator and own.weights["carbon"] == 0.1 and own.priorities["mining"] == 4
    got.site.settings.priorities.CopyFrom(sitenode_pb2.Priorities(fleet=2, facility=3, battery=4, mining=1, export=5))
    mine = views.settings_of(got)
    assert mine is not None and mine.from_operator and mine.priorities["mining"] == 1 and mine.weights["carbon"] == 0.1


def test_live_updates_carry_each_sites_flows_as_the_diagram_draws_them():
    w = portfolio_pb2.WatchPortfolioResponse(
        at=ts(NOW),
        sites=[
            portfolio_pb2.SiteFlow(site_id="a", connected=True, latest=point(grid_import_kw=5, load_kw=5)),
            portfolio_pb2.SiteFlow(site_id="b"),
        ],
    )
    a, b = views.live_update(w)["sites"]
    assert a["flows"] == (views.Flow("grid", "facility", 5.0),) and a["mode"] == "portfolio"
    assert b["live"] is None and b["flows"] == () and b["mode"] == "unknown"


def test_schedule_and_commands_views():
    s = common_pb2.Schedule(
        version="v1",
        source="portfolio",
        start=ts(NOW),
        step_minutes=15,
        columns=[common_pb2.ScheduleColumn(name="grid_import_kw", values=[1.23456, 2.0])],
    )
    view = views.schedule_of(s)
    assert view is not None and view.columns["grid_import_kw"] == (1.235, 2.0) and view.step_minutes == 15
    assert views.schedule_of(common_pb2.Schedule()) is None


def test_settings_form_names_each_bad_field_and_sends_nothing():
    with pytest.raises(InvalidInput) as bad:
        forms.settings_request(
            "a",
            {
                "priorities": {"fleet": "x", "facility": 2, "battery": 2.5, "mining": "", "export": 5},
                "weights": {"cost": 1, "carbon": "lots", "peak": 0},
            },
        )
    fields = {v.field: v.description for v in bad.value.violations}
    assert set(fields) == {"priorities.fleet", "priorities.battery", "priorities.mining", "weights.carbon"}
    assert "whole number" in fields["priorities.battery"] and "required" in fields["priorities.mining"]
    with pytest.raises(InvalidInput) as empty:
        forms.settings_request("a", {})
    assert empty.value.violations[0].field == "body"
    with pytest.raises(InvalidInput):
        forms.settings_request("a", ["not", "an", "object"])


def test_settings_form_passes_ranges_to_the_portfolio_to_judge():
    request = forms.settings_request(
        "a", {"priorities": {"fleet": "9", "facility": 2, "battery": 3, "mining": 4, "export": 5}}
    )
    assert request.site_id == "a" and request.priorities.fleet == 9 and not request.HasField("weights")


def test_event_form():
    event = forms.event_message(
        {"event_id": "e1", "kind": "CAP_AT", "kw": "40", "start": "2025-06-20T18:00Z", "end": "2025-06-20T19:00+00:00"}
    )
    assert (
        event.kind == portfolio_pb2.FLEX_KIND_CAP_AT
        and event.kw == 40.0
        and event.end.seconds - event.start.seconds == 3600
    )
    with pytest.raises(InvalidInput) as bad:
        forms.event_message({"kind": "MORE", "kw": "-", "start": "18:00", "end": "2025-06-20T19:00"})
    assert {v.field for v in bad.value.violations} == {"event.kind", "event.kw", "event.start", "event.end"}


def test_feeder_form():
    feeder = forms.feeder_message({"feeder_id": "north", "site_ids": ["a", "b"], "cap_kw": "120.5"})
    assert feeder.cap_kw == 120.5 and list(feeder.site_ids) == ["a", "b"]
    with pytest.raises(InvalidInput) as bad:
        forms.feeder_message({"feeder_id": "north", "site_ids": "a", "cap_kw": "NaN"})
    assert {v.field for v in bad.value.violations} == {"feeder.site_ids", "feeder.cap_kw"}
