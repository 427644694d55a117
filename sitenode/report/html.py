"""The report page (one self-contained HTML file) and the savings table the CLI prints.

Both only format: they take the metrics as computed and put them in rows. The page
carries its CSS inline and links nothing outside its bundle, so it opens offline and
from an archive. Every piece of text that reaches the page goes through `html.escape`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

from rich import box
from rich.table import Table
from rich.text import Text

from sitenode.metrics import CostBreakdown

BAU = "business_as_usual"


@dataclass(frozen=True)
class Row:
    field: str  # a CostBreakdown field
    label: str
    unit: str  # "{currency}" stands for the tariff's currency


ROWS: tuple[Row, ...] = (
    Row("total_cost", "total cost", "{currency}"),
    Row("energy_cost", "energy cost", "{currency}"),
    Row("export_revenue", "export revenue", "{currency}"),
    Row("demand_cost", "demand cost", "{currency}"),
    Row("degradation_cost", "degradation cost", "{currency}"),
    Row("flex_value", "flexible-load value", "{currency}"),
    Row("carbon_kg", "carbon", "kg"),
    Row("peak_import_kw", "peak import", "kW"),
    Row("ev_energy_kwh", "EV energy delivered", "kWh"),
    Row("ev_shortfall_kwh", "EV shortfall", "kWh"),
    Row("breach_kwh", "import-limit breach", "kWh"),
    Row("breach_cost", "breach penalty", "{currency}"),
)


@dataclass(frozen=True)
class Image:
    src: str  # relative to the page, e.g. "report/soc.png"
    caption: str


@dataclass(frozen=True)
class ReportPage:
    title: str
    site_id: str
    horizon: str
    currency: str
    metrics: Mapping[str, CostBreakdown]
    images: Sequence[Image]


def number(value: float, decimals: int = 2) -> str:
    """Fixed decimals with thousands separators; never "-0.00", and "n/a" for a non-number."""
    if not math.isfinite(value):
        return "n/a"
    # Adding 0.0 turns the -0.0 that rounding a tiny negative leaves into 0.0.
    return f"{round(value, decimals) + 0.0:,.{decimals}f}"


def savings(metrics: Mapping[str, CostBreakdown]) -> dict[str, float] | None:
    """Business as usual's total cost minus each schedule's (positive: cheaper); None without it."""
    if BAU not in metrics:
        return None
    base = metrics[BAU].total_cost
    return {name: base - m.total_cost for name, m in metrics.items()}


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 1280px;
       padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; }
.meta { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 1rem 0 0.4rem; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d0d0; padding: 0.3rem 0.7rem; text-align: right; }
thead th { background: #f0f3f7; }
tbody th { text-align: left; font-weight: normal; }
td.unit { color: #666; text-align: left; }
tr.total { font-weight: bold; }
tr.savings { font-weight: bold; background: #eef6ee; }
p.note { color: #555; font-size: 0.9rem; }
figure { margin: 1.5rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e5e5e5; }
figcaption { color: #555; font-size: 0.9rem; }
""".strip()


def _table(metrics: Mapping[str, CostBreakdown], currency: str) -> str:
    names = list(metrics)
    head = "".join(f"<th scope='col'>{escape(name)}</th>" for name in names)
    rows = []
    for row in ROWS:
        cells = "".join(f"<td>{number(getattr(metrics[n], row.field))}</td>" for n in names)
        unit = escape(row.unit.format(currency=currency))
        css = " class='total'" if row.field == "total_cost" else ""
        rows.append(
            f"<tr{css}><th scope='row'>{escape(row.label)} <code>{escape(row.field)}</code></th>"
            f"<td class='unit'>{unit}</td>{cells}</tr>"
        )
    saved = savings(metrics)
    if saved is not None:
        cells = "".join(f"<td>{number(saved[n])}</td>" for n in names)
        rows.append(
            f"<tr class='savings'><th scope='row'>saving vs {escape(BAU)}</th>"
            f"<td class='unit'>{escape(currency)}</td>{cells}</tr>"
        )
    body = "\n".join(rows)
    return (
        f"<table>\n<thead><tr><th scope='col'>metric</th><th scope='col'>unit</th>{head}</tr></thead>\n"
        f"<tbody>\n{body}\n</tbody>\n</table>"
    )


def render_page(report: ReportPage) -> str:
    """The whole page as text: deterministic, so the same bundle renders the same bytes."""
    table = _table(report.metrics, report.currency) if report.metrics else "<p>No schedules were priced.</p>"
    note = (
        "total cost = energy cost − export revenue + demand cost + degradation cost − flexible-load value. "
        "EV shortfall and import-limit breach are reported beside it and never enter it."
    )
    if BAU in report.metrics:
        note += f" A positive saving means cheaper than {BAU}."
    figures = "\n".join(
        f"<figure><img src='{escape(img.src)}' alt='{escape(img.caption)}'>"
        f"<figcaption>{escape(img.caption)}</figcaption></figure>"
        for img in report.images
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(report.title)} · gridmesh report</title>
<style>
{_CSS}
</style>
</head>
<body>
<h1>{escape(report.title)}</h1>
<p class="meta">Site <strong>{escape(report.site_id)}</strong> · horizon {escape(report.horizon)}
 · money in {escape(report.currency)}</p>
<h2>Cost per schedule</h2>
{table}
<p class="note">{escape(note)}</p>
<h2>Plots</h2>
{figures}
</body>
</html>
"""


def savings_table(metrics: Mapping[str, CostBreakdown], currency: str) -> Table:
    """One row per schedule, with its saving against business as usual when that was priced.

    Money keeps two decimals, kW and kWh one (the page has two for all).
    """
    caption = f"saving: {BAU}'s total cost minus the schedule's" if BAU in metrics else f"no {BAU} priced"
    # No padding: the box's blank rule alone separates columns, so the longest names and
    # everyday sums still fit 80 columns, rich's width when output is piped.
    table = Table(
        title=f"Cost per schedule ({currency})", caption=caption, box=box.SIMPLE_HEAD, padding=0, pad_edge=False
    )
    headings = (
        "total\ncost",
        "energy\ncost",
        "demand\ncost",
        "peak\nkW",
        "EV\nkWh",
        "short-\nfall\nkWh",
        "breach\nkWh",
        "saving\nvs BAU",
    )
    saved = savings(metrics)
    rows = [
        [
            number(m.total_cost),
            number(m.energy_cost),
            number(m.demand_cost),
            number(m.peak_import_kw, 1),
            number(m.ev_energy_kwh, 1),
            number(m.ev_shortfall_kwh, 1),
            number(m.breach_kwh, 1),
            "n/a" if saved is None else number(saved[name]),
        ]
        for name, m in metrics.items()
    ]
    table.add_column("schedule", justify="left", no_wrap=True)
    for heading in headings:
        # Too narrow a terminal folds digits onto a second line rather than hiding them.
        table.add_column(heading, justify="right", overflow="fold")
    for name, cells in zip(metrics, rows, strict=True):
        # Text, not str: a schedule name is data, never rich markup.
        table.add_row(Text(name), *cells)
    return table
