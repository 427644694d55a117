"""The demo's run page, `runs/demo-<time>/index.html`: what the terminal's final table
shows, the verdict behind the exit code, the run's parameters, plots of each feeder's
import against its cap and of the portfolio's import with the flex events shaded, and
links to each site's report.

Pure: data in, HTML text and PNG files out; no process, store or clock. The figures come
from the `RunOutcome` the terminal table prints (`run_totals` and `not_kept` serve both),
the plotted series from the realized schedules the outcome was priced on. The page carries
its CSS inline and links nothing outside the run folder; every piece of text goes through
`html.escape`, every link through `urllib.parse.quote` too.

    RUN/index.html            the page
    RUN/plots/*.png           feeder-<n>-<id>.png per feeder, portfolio-import.png
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd
from matplotlib import dates as mdates
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from portfolio.model import Feeder, FlexEvent
from portfolio.outcome import EV_TOLERANCE, TOLERANCE_KW, LimitOutcome, RunOutcome, SiteRealized
from sitenode.schedule import GRID_EXPORT, GRID_IMPORT

PAGE = "index.html"
PLOTS = "plots"
TITLE = "gridmesh demo: what the day cost and kept"
PORTFOLIO_PLOT = "portfolio-import.png"


@dataclass(frozen=True)
class Totals:
    """The table's total row: the sites' sums."""

    cost: float
    bau_cost: float
    ev_delivered_kwh: float
    ev_required_kwh: float
    ev_ok: bool

    @property
    def saved(self) -> float:
        return self.bau_cost - self.cost


def run_totals(outcome: RunOutcome) -> Totals:
    sites = outcome.sites
    return Totals(
        sum(s.cost for s in sites),
        sum(s.bau_cost for s in sites),
        sum(s.ev_delivered_kwh for s in sites),
        sum(s.ev_required_kwh for s in sites),
        all(s.ev_ok for s in sites),
    )


def not_kept(outcome: RunOutcome) -> list[str]:
    """What was not kept, one line each: empty exactly when `outcome.ok` (the demo exits 0)."""
    lines = [
        f"{s.site_id}: EV energy {s.ev_delivered_kwh:.1f} kWh delivered of {s.ev_required_kwh:.1f} kWh needed"
        for s in outcome.sites
        if not s.ev_ok
    ]
    lines += [
        f"feeder {f.name}: import exceeded its cap of {f.limit_kw:.1f} kW by up to {f.worst_excess_kw:.2f} kW"
        for f in outcome.feeders
        if not f.holds
    ]
    lines += [
        f"flex event {e.name}: import exceeded its limit of {e.limit_kw:.1f} kW by up to {e.worst_excess_kw:.2f} kW"
        for e in outcome.events
        if not e.holds
    ]
    return lines


@dataclass(frozen=True, eq=False)
class LimitSeries:
    """A feeder cap or a flex event, its row of the table and what it was checked against."""

    outcome: LimitOutcome
    sites: tuple[str, ...]
    import_kw: pd.Series  # per step (UTC index): a feeder's net import, an event's import, summed over `sites`
    limit_kw: pd.Series  # per step; NaN outside an event's window
    window: tuple[datetime, datetime] | None = None  # an event's


@dataclass(frozen=True, eq=False)
class DemoPage:
    outcome: RunOutcome
    start: datetime
    hours: float
    speed: float  # simulated seconds per real second
    step_minutes: int
    feeders: tuple[LimitSeries, ...]
    events: tuple[LimitSeries, ...]
    total_import_kw: pd.Series | None  # every site's import summed, per step; None without sites
    reports: Mapping[str, str]  # site id -> its report page, relative to the run folder
    title: str = TITLE


@dataclass(frozen=True)
class Plot:
    src: str  # relative to the page
    caption: str


def page_data(
    outcome: RunOutcome,
    realized: Mapping[str, SiteRealized],
    feeders: Sequence[Feeder],
    events: Sequence[FlexEvent],
    *,
    start: datetime,
    hours: float,
    speed: float,
    reports: Mapping[str, str],
) -> DemoPage:
    """The page's content: `outcome` as computed, with the realized import its limits were checked on."""
    schedules = {site_id: r.schedule for site_id, r in realized.items()}
    step_minutes = 15
    if schedules:
        index = next(iter(schedules.values())).index
        if len(index) > 1:
            step_minutes = int((index[1] - index[0]) / pd.Timedelta(minutes=1))
    by_name = {f.name: f for f in outcome.feeders}
    feeder_series = []
    for feeder in feeders:
        present = [s for s in feeder.site_ids if s in schedules]
        if feeder.feeder_id not in by_name or not present:
            continue
        net = sum(
            (schedules[s][GRID_IMPORT] - schedules[s][GRID_EXPORT] for s in present[1:]),
            schedules[present[0]][GRID_IMPORT] - schedules[present[0]][GRID_EXPORT],
        )
        at = ((net.index - pd.Timestamp(start)) / pd.Timedelta(minutes=step_minutes)).astype(int)
        caps = pd.Series([feeder.cap_at(max(0, int(i))) for i in at], index=net.index, dtype=float)
        feeder_series.append(LimitSeries(by_name[feeder.feeder_id], tuple(present), net, caps))
    by_name = {e.name: e for e in outcome.events}
    event_series = []
    for event in events:
        present = [s for s in (event.site_ids or list(schedules)) if s in schedules]
        if event.event_id not in by_name or not present:
            continue
        total = sum((schedules[s][GRID_IMPORT] for s in present[1:]), schedules[present[0]][GRID_IMPORT])
        inside = (total.index >= pd.Timestamp(event.start)) & (total.index < pd.Timestamp(event.end))
        limit = pd.Series(np.where(inside, by_name[event.event_id].limit_kw, np.nan), index=total.index)
        event_series.append(
            LimitSeries(by_name[event.event_id], tuple(present), total, limit, (event.start, event.end))
        )
    total_import = (
        sum((s[GRID_IMPORT] for s in list(schedules.values())[1:]), next(iter(schedules.values()))[GRID_IMPORT])
        if schedules
        else None
    )
    return DemoPage(
        outcome,
        start,
        hours,
        speed,
        step_minutes,
        tuple(feeder_series),
        tuple(event_series),
        total_import,
        dict(reports),
    )


# ---------------------------------------------------------------- plots

_DPI = 110


def _naive(at: datetime | pd.Timestamp) -> pd.Timestamp:
    t = pd.Timestamp(at)
    return t.tz_convert("UTC").tz_localize(None) if t.tzinfo is not None else t


def _edges(index: pd.DatetimeIndex, step_minutes: int) -> np.ndarray:
    """Step starts plus the end of the last step, naive UTC: per-step values held over their step."""
    start = index.tz_convert("UTC").tz_localize(None) if index.tz is not None else index
    return start.append(pd.DatetimeIndex([start[-1] + pd.Timedelta(minutes=step_minutes)])).to_numpy()


def _held(values: pd.Series) -> np.ndarray:
    arr = values.to_numpy(dtype=float)
    return np.append(arr, arr[-1])


def _figure() -> tuple[Figure, Axes]:
    fig = Figure(figsize=(11.0, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _finish(fig: Figure, ax: Axes, path: Path) -> None:
    locator = mdates.AutoDateLocator(minticks=4, maxticks=12)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel("kW")
    ax.grid(True, color="#e3e3e3", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.legend(loc="best", fontsize=8, framealpha=0.9)
    fig.savefig(path, dpi=_DPI)


def plot_feeder(series: LimitSeries, step_minutes: int, path: Path) -> Path:
    fig, ax = _figure()
    x, imp, cap = _edges(series.import_kw.index, step_minutes), _held(series.import_kw), _held(series.limit_kw)
    ax.step(
        x, imp, where="post", color="#4c6a92", linewidth=1.6, label=f"realized net import ({', '.join(series.sites)})"
    )
    ax.step(x, cap, where="post", color="#c0392b", linestyle="--", linewidth=1.4, label="cap")
    ax.fill_between(x, cap, imp, where=imp > cap, step="post", color="#c0392b", alpha=0.3, label="above the cap")
    ax.set_title(f"feeder {series.outcome.name}", loc="left", fontsize=10)
    _finish(fig, ax, path)
    return path


def plot_portfolio(total: pd.Series, events: Sequence[LimitSeries], step_minutes: int, path: Path) -> Path:
    fig, ax = _figure()
    x = _edges(total.index, step_minutes)
    ax.step(x, _held(total), where="post", color="#4c6a92", linewidth=1.6, label="portfolio import (every site)")
    for e in events:
        assert e.window is not None
        ax.axvspan(
            _naive(e.window[0]), _naive(e.window[1]), color="#f2b134", alpha=0.25, label=f"flex event {e.outcome.name}"
        )
        ax.step(
            x,
            _held(e.limit_kw),
            where="post",
            color="#c0392b",
            linestyle="--",
            linewidth=1.4,
            label=f"limit of {e.outcome.name}",
        )
        if not np.allclose(e.import_kw.to_numpy(dtype=float), total.to_numpy(dtype=float)):
            ax.step(
                x,
                _held(e.import_kw),
                where="post",
                color="#2f9e77",
                linewidth=1.2,
                label=f"import of {', '.join(e.sites)} (checked against {e.outcome.name})",
            )
    ax.set_title("portfolio import", loc="left", fontsize=10)
    _finish(fig, ax, path)
    return path


def _file_name(n: int, name: str) -> str:
    return f"feeder-{n}-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.png"


def write_plots(out: Path, page: DemoPage) -> list[Plot]:
    """The page's plots under `out/plots/`; returns them with their captions."""
    folder = out / PLOTS
    folder.mkdir(parents=True, exist_ok=True)
    drawn = []
    for n, f in enumerate(page.feeders, 1):
        name = _file_name(n, f.outcome.name)
        plot_feeder(f, page.step_minutes, folder / name)
        drawn.append(
            Plot(
                f"{PLOTS}/{name}",
                f"Feeder {f.outcome.name}: the realized net import (import less export) of "
                f"{', '.join(f.sites)} in each {page.step_minutes}-minute step against the feeder's cap.",
            )
        )
    if page.total_import_kw is not None and len(page.total_import_kw):
        plot_portfolio(page.total_import_kw, page.events, page.step_minutes, folder / PORTFOLIO_PLOT)
        shaded = ", ".join(
            f"{e.outcome.name} ({e.window[0]:%H:%M} to {e.window[1]:%H:%M} UTC)" for e in page.events if e.window
        )
        drawn.append(
            Plot(
                f"{PLOTS}/{PORTFOLIO_PLOT}",
                "The portfolio's realized import, every site summed, per step"
                + (f"; shaded: the flex event {shaded}, its limit dashed." if shaded else "."),
            )
        )
    return drawn


# ---------------------------------------------------------------- page

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 1280px;
       padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; }
.meta { color: #555; margin-top: 0; }
.verdict { padding: 0.7rem 1rem; border-radius: 4px; margin: 1rem 0; }
.verdict.ok { background: #eef6ee; border: 1px solid #9cc79c; }
.verdict.fail { background: #fbeaea; border: 1px solid #d99; }
.verdict strong { font-size: 1.15rem; }
table { border-collapse: collapse; margin: 0.6rem 0 0.4rem; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d0d0; padding: 0.3rem 0.7rem; text-align: right; }
thead th { background: #f0f3f7; }
tbody th { text-align: left; font-weight: normal; }
th.text, td.text { text-align: left; }
tr.total { font-weight: bold; background: #f7f7f7; }
td.no { color: #b00; font-weight: bold; }
dl.params { display: grid; grid-template-columns: max-content auto; gap: 0.2rem 1rem; }
dl.params dt { color: #555; }
dl.params dd { margin: 0; }
p.note { color: #555; font-size: 0.9rem; }
figure { margin: 1.5rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e5e5e5; }
figcaption { color: #555; font-size: 0.9rem; }
""".strip()


_TEXT = " class='text'"


def _href(path: str) -> str:
    return escape(quote(path, safe="/"), quote=True)


def _flag(ok: bool, yes: str, no: str) -> str:
    return f"<td>{yes}</td>" if ok else f"<td class='no'>{no}</td>"


def _sites_table(page: DemoPage) -> str:
    outcome = page.outcome
    currencies = sorted({s.currency for s in outcome.sites})
    money = f" ({escape(', '.join(currencies))})" if currencies else ""
    columns = (
        "site",
        f"cost{money}",
        f"business as usual{money}",
        f"saved{money}",
        "peak kW",
        "BAU peak kW",
        "EV kWh",
        "EV needed kWh",
        "EV ok",
        "report",
    )
    head = "".join(
        f"<th scope='col'{_TEXT if c in ('site', 'report') else ''}>{c}</th>" for c in columns
    )  # `money` is escaped already
    rows = []
    for s in outcome.sites:
        report = page.reports.get(s.site_id)
        link = f"<a href='{_href(report)}'>report.html</a>" if report else "-"
        rows.append(
            f"<tr><th scope='row'>{escape(s.site_id)}</th><td>{s.cost:,.2f}</td><td>{s.bau_cost:,.2f}</td>"
            f"<td>{s.bau_cost - s.cost:,.2f}</td><td>{s.peak_import_kw:.1f}</td><td>{s.bau_peak_import_kw:.1f}</td>"
            f"<td>{s.ev_delivered_kwh:.1f}</td><td>{s.ev_required_kwh:.1f}</td>{_flag(s.ev_ok, 'yes', 'NO')}"
            f"<td class='text'>{link}</td></tr>"
        )
    t = run_totals(outcome)
    rows.append(
        f"<tr class='total'><th scope='row'>total</th><td>{t.cost:,.2f}</td><td>{t.bau_cost:,.2f}</td>"
        f"<td>{t.saved:,.2f}</td><td></td><td></td><td>{t.ev_delivered_kwh:.1f}</td><td>{t.ev_required_kwh:.1f}</td>"
        f"{_flag(t.ev_ok, 'yes', 'NO')}<td></td></tr>"
    )
    body = "\n".join(rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _limits_table(rows: Sequence[LimitSeries | LimitOutcome], kind: str, limit: str, yes: str, no: str) -> str:
    head = "".join(
        f"<th scope='col'{_TEXT if c in (kind, 'sites') else ''}>{escape(c)}</th>"
        for c in (kind, "sites", f"{limit} kW", "worst excess kW", "steps checked", yes)
    )
    cells = []
    for row in rows:
        o, sites = (row.outcome, ", ".join(row.sites)) if isinstance(row, LimitSeries) else (row, "")
        cells.append(
            f"<tr><th scope='row'>{escape(o.name)}</th><td class='text'>{escape(sites)}</td><td>{o.limit_kw:.1f}</td>"
            f"<td>{max(o.worst_excess_kw, 0):.2f}</td><td>{o.steps_checked}</td>{_flag(o.holds, yes, no)}</tr>"
        )
    body = "\n".join(cells)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _with_series(outcomes: Sequence[LimitOutcome], series: Sequence[LimitSeries]) -> list[LimitSeries | LimitOutcome]:
    """Every row of the outcome, with its series where the page has one (the table shows each)."""
    by_name = {s.outcome.name: s for s in series}
    return [by_name.get(o.name, o) for o in outcomes]


def render_index(page: DemoPage, plots: Sequence[Plot] = ()) -> str:
    """The whole page as text: deterministic, so the same run renders the same bytes."""
    outcome = page.outcome
    missed = not_kept(outcome)
    if outcome.ok:
        verdict = (
            "<div class='verdict ok'><strong>Kept: every feeder cap, flex event and EV need held</strong>"
            " · exit code 0</div>"
        )
    else:
        items = "".join(f"<li>{escape(line)}</li>" for line in missed)
        verdict = f"<div class='verdict fail'><strong>Not kept</strong> · exit code 1<ul>{items}</ul></div>"
    end = page.start + timedelta(hours=page.hours)
    day_seconds = 86_400 / page.speed if page.speed > 0 else float("nan")
    params = "".join(
        f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>"
        for k, v in (
            ("simulated start", f"{page.start:%Y-%m-%d %H:%M} UTC"),
            ("simulated end", f"{end:%Y-%m-%d %H:%M} UTC"),
            (
                "hours",
                f"{page.hours:g} ({int(round(page.hours * 60 / page.step_minutes))} steps of {page.step_minutes} min)",
            ),
            ("speed", f"{page.speed:g}x real time (a simulated day in {day_seconds:.0f} s)"),
        )
    )
    gaps = [s for s in outcome.sites if s.steps_without_telemetry]
    gap_note = (
        ""
        if not gaps
        else "<p class='note'>Steps without telemetry (priced with a neighbour's): "
        + escape(", ".join(f"{s.site_id} {s.steps_without_telemetry} of {s.steps}" for s in gaps))
        + ".</p>"
    )
    feeders = (
        _limits_table(_with_series(outcome.feeders, page.feeders), "feeder", "cap", "kept", "BROKEN")
        if outcome.feeders
        else "<p>No feeder cap was set.</p>"
    )
    events = (
        _limits_table(_with_series(outcome.events, page.events), "flex event", "limit", "delivered", "MISSED")
        if outcome.events
        else "<p>No flex event was called.</p>"
    )
    figures = (
        "\n".join(
            f"<figure><img src='{_href(p.src)}' alt='{escape(p.caption)}'>"
            f"<figcaption>{escape(p.caption)}</figcaption></figure>"
            for p in plots
        )
        or "<p>No plots.</p>"
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(page.title)}</title>
<style>
{_CSS}
</style>
</head>
<body>
<h1>{escape(page.title)}</h1>
<p class="meta">A portfolio and {len(outcome.sites)} site nodes on one simulated clock; their telemetry, as the
portfolio stored it, priced against business as usual.
Machine-readable: <a href="{_href("outcome.json")}">outcome.json</a>.</p>
{verdict}
<h2>Run</h2>
<dl class="params">{params}</dl>
<h2>Sites</h2>
{_sites_table(page)}
<p class="note">saved = business as usual less cost. EV ok: delivered at least the need less {EV_TOLERANCE:.0%}.
Peaks are per site; the total row leaves them out (sites peak at different times).</p>
{gap_note}
<h2>Feeders</h2>
{feeders}
<h2>Flex events</h2>
{events}
<p class="note">Worst excess: the largest amount by which the realized import of a {page.step_minutes}-minute step
exceeded the limit (0 when it never did); a limit is kept when that stays within {TOLERANCE_KW:g} kW, what metering
resolves.</p>
<h2>Plots</h2>
{figures}
</body>
</html>
"""


def write_index(out: Path, page: DemoPage) -> Path:
    """Plots under `out/plots/` and the page at `out/index.html`; returns the page's path."""
    out = Path(out)
    plots = write_plots(out, page)
    path = out / PAGE
    path.write_text(render_index(page, plots), encoding="utf-8")
    return path
