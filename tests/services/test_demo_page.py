"""The demo's run page (services.demo_page) on a hand-made outcome: the table's numbers,
the verdict behind the exit code, escaping, links, plots, and nothing fetched from outside."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import numpy as np
import pandas as pd

from portfolio.model import Feeder, FlexEvent, FlexKind
from portfolio.outcome import LimitOutcome, RunOutcome, SiteOutcome
from services.demo_page import not_kept, page_data, render_index, run_totals, write_index

START = datetime(2025, 6, 20, 21, 0, tzinfo=UTC)
EVIL = "shed<script>alert(1)</script>"
SITES = ("depot-north", "office-east", EVIL)


def _site(
    site_id: str, cost: float, bau: float, peak: float, bau_peak: float, ev: float = 0.0, need: float = 0.0
) -> SiteOutcome:
    return SiteOutcome(site_id, "USD", cost, bau, peak, bau_peak, ev, need, 8, 0)


def _outcome(ev_delivered: float = 120.0, feeder_excess: float = -3.0, event_excess: float = -0.5) -> RunOutcome:
    return RunOutcome(
        sites=(
            _site("depot-north", 1234.5, 1500.25, 180.0, 240.5, ev_delivered, 120.0),
            _site("office-east", 10.0, 12.5, 40.0, 41.0),
            _site(EVIL, 5.0, 4.0, 20.0, 20.0),
        ),
        feeders=(LimitOutcome("north", 200.0, feeder_excess, 8),),
        events=(LimitOutcome("evening-peak", 150.0, event_excess, 2),),
    )


def _realized() -> dict[str, SimpleNamespace]:
    index = pd.date_range(START, periods=8, freq="15min", name="timestamp")
    imports = {"depot-north": np.arange(8) * 10.0 + 100, "office-east": np.full(8, 40.0), EVIL: np.full(8, 20.0)}
    exports = {"depot-north": np.zeros(8), "office-east": np.full(8, 5.0), EVIL: np.zeros(8)}
    return {
        s: SimpleNamespace(
            schedule=pd.DataFrame({"grid_import_kw": imports[s], "grid_export_kw": exports[s]}, index=index)
        )
        for s in SITES
    }


FEEDER = Feeder(feeder_id="north", site_ids=["depot-north", "office-east"], cap_kw=200.0)
EVENT = FlexEvent(
    event_id="evening-peak",
    kind=FlexKind.CAP_AT,
    kw=150.0,
    start=START + timedelta(minutes=30),
    end=START + timedelta(minutes=60),
)
REPORTS = {s: f"sites/{s}/report.html" for s in SITES}


def _page(outcome: RunOutcome):
    return page_data(outcome, _realized(), [FEEDER], [EVENT], start=START, hours=2.0, speed=864.0, reports=REPORTS)


def _cells(html: str) -> list[str]:
    return re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", html)


def test_the_run_page_shows_the_table_the_verdict_and_links_and_fetches_nothing(tmp_path):
    outcome = _outcome()
    assert outcome.ok and not_kept(outcome) == []
    path = write_index(tmp_path, _page(outcome))
    assert path == tmp_path / "index.html"
    html = path.read_text(encoding="utf-8")
    cells = _cells(html)
    # per site: cost, business as usual, saved, peak, BAU peak, EV delivered and needed, EV ok
    depot = cells.index("depot-north")
    assert cells[depot + 1 : depot + 9] == ["1,234.50", "1,500.25", "265.75", "180.0", "240.5", "120.0", "120.0", "yes"]
    # the total row: the sites' sums, as run_totals gives them to the terminal table too
    totals = run_totals(outcome)
    assert (totals.cost, totals.bau_cost, totals.saved) == (1249.5, 1516.75, 267.25)
    total = cells.index("total")
    assert cells[total + 1 : total + 4] == ["1,249.50", "1,516.75", "267.25"] and cells[total + 6 : total + 9] == [
        "120.0",
        "120.0",
        "yes",
    ]
    # the feeder and the event: limit, worst excess (never below zero), and kept / delivered
    north = cells.index("north")
    assert cells[north + 1 : north + 6] == ["depot-north, office-east", "200.0", "0.00", "8", "kept"]
    event = cells.index("evening-peak")
    assert cells[event + 2 : event + 6] == ["150.0", "0.00", "2", "delivered"]
    # the verdict and the run's parameters
    assert "exit code 0" in html and "Kept" in html and "Not kept" not in html
    assert (
        "2025-06-20 21:00 UTC" in html
        and "2025-06-20 23:00 UTC" in html
        and "864x real time" in html
        and "8 steps of 15 min" in html
    )
    # a site id is text: escaped in the page, quoted in its link
    assert "<script" not in html and "shed&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "href='sites/shed%3Cscript%3Ealert%281%29%3C/script%3E/report.html'" in html
    for site in ("depot-north", "office-east"):
        assert f"href='sites/{site}/report.html'" in html
    # self-contained: no URL outside the run folder, every image one of the plots written beside it
    assert not re.search(r"https?:", html, re.IGNORECASE) and "//" not in html  # nor a protocol-relative one
    images = re.findall(r"<img src='([^']+)'", html)
    assert images == ["plots/feeder-1-north.png", "plots/portfolio-import.png"]
    for src in images:
        assert (tmp_path / src).read_bytes().startswith(b"\x89PNG")
    # deterministic: the same outcome renders the same bytes
    assert render_index(_page(outcome)) == render_index(_page(outcome))


def test_a_run_that_missed_says_what_and_exits_1():
    outcome = _outcome(ev_delivered=100.0, feeder_excess=3.25, event_excess=0.04)  # 0.04 kW: within metering tolerance
    assert not outcome.ok
    missed = not_kept(outcome)
    assert missed == [
        "depot-north: EV energy 100.0 kWh delivered of 120.0 kWh needed",
        "feeder north: import exceeded its cap of 200.0 kW by up to 3.25 kW",
    ]
    html = render_index(_page(outcome))
    assert "Not kept" in html and "exit code 1" in html and "exit code 0" not in html
    assert all(f"<li>{line}</li>" in html for line in missed)
    assert "<td class='no'>BROKEN</td>" in html and "<td class='no'>NO</td>" in html and "<td>delivered</td>" in html
    north = _cells(html).index("north")
    assert _cells(html)[north + 3] == "3.25"


def test_the_plotted_series_are_what_the_limits_were_checked_on():
    page = _page(_outcome())
    (feeder,) = page.feeders
    # the feeder: its sites' net import (import less export) against its cap in every step
    assert feeder.sites == ("depot-north", "office-east")
    assert feeder.import_kw.tolist() == [135.0, 145.0, 155.0, 165.0, 175.0, 185.0, 195.0, 205.0]
    assert feeder.limit_kw.tolist() == [200.0] * 8
    # the event: every site's import, its limit inside its window only
    (event,) = page.events
    assert event.sites == SITES and event.window == (EVENT.start, EVENT.end)
    assert event.import_kw.tolist() == page.total_import_kw.tolist() == [160.0 + 10 * i for i in range(8)]
    assert np.isnan(event.limit_kw.iloc[[0, 1, 4, 5, 6, 7]]).all() and event.limit_kw.iloc[[2, 3]].tolist() == [
        150.0,
        150.0,
    ]
    assert page.step_minutes == 15
