"""The report page (one self-contained HTML file) and the CLI's savings table."""

from __future__ import annotations

from html import escape
from pathlib import Path

from rich.table import Table

from sitenode.metrics import CostBreakdown

ROWS = ("total_cost", "energy_cost", "export_revenue", "demand_cost", "degradation_cost", "flex_value", "carbon_kg",
        "peak_import_kw", "ev_energy_kwh", "ev_shortfall_kwh", "breach_kwh", "breach_cost")
BAU = "business_as_usual"


def _money(value: float) -> str:
    return f"{value:,.2f}"


def page(title: str, horizon: str, metrics: dict[str, CostBreakdown], currency: str, images: list[str]) -> str:
    names = list(metrics)
    head = "".join(f"<th>{escape(n.replace('_', ' '))}</th>" for n in names)
    body = []
    for row in ROWS:
        cells = "".join(f"<td>{_money(getattr(metrics[n], row))}</td>" for n in names)
        body.append(f"<tr><th>{escape(row)}</th>{cells}</tr>")
    if BAU in metrics:
        base = metrics[BAU].total_cost
        cells = "".join(f"<td>{_money(base - metrics[n].total_cost)}</td>" for n in names)
        body.append(f"<tr class='savings'><th>saving vs business as usual</th>{cells}</tr>")
    figures = "".join(f"<figure><img src='{escape(src)}' alt='{escape(src)}'></figure>" for src in images)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>gridmesh report: {escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: right; }}
th:first-child {{ text-align: left; }}
tr.savings {{ font-weight: bold; background: #eef6ee; }}
img {{ max-width: 100%; }}
</style></head>
<body>
<h1>Site {escape(title)}</h1>
<p>Horizon {escape(horizon)}. Costs in {escape(currency)}; energy in kWh, power in kW.</p>
<table><thead><tr><th></th>{head}</tr></thead><tbody>
{''.join(body)}
</tbody></table>
{figures}
</body></html>
"""


def savings_table(metrics: dict[str, CostBreakdown], currency: str) -> Table:
    table = Table(title=f"Cost against business as usual ({currency})")
    for col in ("schedule", "total cost", "energy", "demand", "peak kW", "EV kWh", "shortfall kWh", "breach kWh", "saving"):
        table.add_column(col, justify="left" if col == "schedule" else "right")
    base = metrics[BAU].total_cost if BAU in metrics else None
    for name, m in metrics.items():
        saving = "" if base is None else _money(base - m.total_cost)
        table.add_row(name, _money(m.total_cost), _money(m.energy_cost), _money(m.demand_cost), f"{m.peak_import_kw:.1f}",
                      f"{m.ev_energy_kwh:.1f}", f"{m.ev_shortfall_kwh:.2f}", f"{m.breach_kwh:.2f}", saving)
    return table


def write_page(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
