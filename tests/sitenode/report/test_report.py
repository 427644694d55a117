import re
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from factories.problems import make_problem
from rich.console import Console

from sitenode.baselines import business_as_usual
from sitenode.errors import InvalidInput
from sitenode.metrics import CostBreakdown, compute_metrics
from sitenode.model.problem import SiteProblem, build_problem
from sitenode.model.run import RunConfig
from sitenode.model.sessions import EVSession
from sitenode.model.site import SiteConfig
from sitenode.model.timeseries import check_series
from sitenode.model.validation import parse
from sitenode.optimizer.solve import optimize_site
from sitenode.report import savings_table, write_report
from sitenode.schedule import CURTAIL, GRID_EXPORT, GRID_IMPORT, LOAD, PV, new_schedule

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
START = pd.Timestamp("2025-01-15T00:00:00Z")
STEPS = 24


def site_problem(*, battery: bool = True, sessions: bool = True) -> SiteProblem:
    doc = {
        "site_id": "depot-north",
        "timezone": "Europe/London",
        "grid": {"import_limit_kw": 60, "export_limit_kw": 20, "breach_margin": 0.2, "breach_penalty_per_kwh": 10.0},
        "pv": {"curtailable": True},
        "chargers": [{"id": "cp-1", "max_kw": 22, "kind": "ac"}, {"id": "cp-2", "max_kw": 50, "kind": "dc"}],
    }
    if battery:
        doc["battery"] = {
            "capacity_kwh": 40,
            "soc_initial_kwh": 20,
            "soc_min_kwh": 4,
            "soc_max_kwh": 38,
            "max_charge_kw": 20,
            "max_discharge_kw": 20,
            "charge_efficiency": 0.95,
            "discharge_efficiency": 0.95,
            "degradation_cost_per_kwh": 0.01,
        }
    site = parse(SiteConfig, doc)
    run = parse(
        RunConfig,
        {
            "horizon": {"start": START.isoformat(), "step_minutes": 60, "steps": STEPS},
            "tariff": {
                "currency": "GBP",
                "energy_rates": [
                    {"name": "night", "rate": 0.08, "schedule": {"start_time": "00:00", "end_time": "06:59"}},
                    {"name": "day", "rate": 0.25, "schedule": {"start_time": "07:00", "end_time": "23:59"}},
                ],
                "export_rate": 0.05,
                "demand_charges": [
                    {"name": "evening", "rate_per_kw": 5.0, "schedule": {"start_time": "16:00", "end_time": "19:59"}}
                ],
            },
        },
    )
    index = pd.date_range(START, periods=STEPS, freq="60min")
    hour = np.asarray(index.hour)
    raw = pd.DataFrame(
        {
            "timestamp": index,
            "load_kw": 15.0 + 10.0 * ((hour >= 8) & (hour < 18)),
            "pv_kw": np.clip(30 * np.sin((hour - 7) / 10 * np.pi), 0, None),
            "carbon_kg_per_kwh": 0.2 + 0.1 * np.cos(hour / 24 * 2 * np.pi),
        }
    )
    evs = []
    if sessions:
        evs = [
            EVSession(
                session_id="ev-1",
                arrival=START + pd.Timedelta(hours=17),
                departure=START + pd.Timedelta(hours=23),
                energy_kwh=40,
                max_kw=11,
                priority=1,
                charger_id="cp-1",
            ),
            EVSession(
                session_id="ev-2",
                arrival=START + pd.Timedelta(hours=6),
                departure=START + pd.Timedelta(hours=12),
                energy_kwh=30,
                max_kw=50,
                priority=2,
                charger_id="cp-2",
            ),
        ]
    return build_problem(site, run, check_series(raw, run.horizon, run.tariff), evs)


def grid_only(problem: SiteProblem) -> pd.DataFrame:
    """A trivial schedule: the grid covers the load, surplus PV is exported, nothing else moves."""
    frame = new_schedule(problem)
    net = frame[LOAD] - frame[PV]
    frame[GRID_IMPORT] = net.clip(lower=0.0)
    surplus = (-net).clip(lower=0.0)
    frame[GRID_EXPORT] = np.minimum(surplus, problem.export_limit_kw)
    frame[CURTAIL] = surplus - frame[GRID_EXPORT]
    return frame


def priced(problem: SiteProblem) -> tuple[dict[str, pd.DataFrame], dict[str, CostBreakdown]]:
    schedules = {
        "optimized": optimize_site(problem).schedule,
        "business_as_usual": business_as_usual(problem),
        "grid_only": grid_only(problem),
    }
    return schedules, {name: compute_metrics(problem, frame) for name, frame in schedules.items()}


def referenced_images(html: str) -> list[str]:
    return re.findall(r"<img src='([^']+)'", html)


def assert_real_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size > 10_000
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 300 and pixels.shape[1] > 1000
    # a blank canvas has one colour; a drawn plot has many
    assert pixels[..., :3].std() > 0.02


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    problem = site_problem()
    schedules, metrics = priced(problem)
    out = tmp_path_factory.mktemp("bundle")
    page = write_report(out, problem, schedules, metrics, "GBP", title="Depot <north> & co")
    return problem, schedules, metrics, out, page


def test_every_plot_is_a_real_png_under_report(full_report):
    _, _, _, out, page = full_report
    assert page == out / "report.html"
    names = sorted(p.name for p in (out / "report").glob("*.png"))
    assert names == ["ev_sessions.png", "power_stack.png", "prices.png", "soc.png"]
    for name in names:
        assert_real_png(out / "report" / name)


def test_page_references_exactly_the_images_that_exist(full_report):
    _, _, _, out, page = full_report
    html = page.read_text(encoding="utf-8")
    refs = referenced_images(html)
    assert all(src.startswith("report/") and src.endswith(".png") for src in refs)
    assert sorted(refs) == sorted(f"report/{p.name}" for p in (out / "report").glob("*.png"))


def test_page_has_site_costs_and_savings_against_business_as_usual(full_report):
    problem, schedules, metrics, _, page = full_report
    html = page.read_text(encoding="utf-8")
    assert "depot-north" in html
    assert "Depot &lt;north&gt; &amp; co" in html and "<north>" not in html
    assert "2025-01-15 00:00" in html and "2025-01-16 00:00" in html
    for name, m in metrics.items():
        assert f"<th scope='col'>{name}</th>" in html
        assert f"{m.total_cost:,.2f}" in html
    for field in (
        "total_cost",
        "energy_cost",
        "export_revenue",
        "demand_cost",
        "degradation_cost",
        "flex_value",
        "carbon_kg",
        "peak_import_kw",
        "ev_energy_kwh",
        "ev_shortfall_kwh",
        "breach_kwh",
        "breach_cost",
    ):
        assert f"<code>{field}</code>" in html
    savings_row = re.search(r"<tr class='savings'>(.*?)</tr>", html).group(1)
    cells = re.findall(r"<td>([^<]*)</td>", savings_row)
    base = metrics["business_as_usual"].total_cost
    assert cells == [f"{base - metrics[n].total_cost + 0.0:,.2f}" for n in metrics]
    assert cells[list(metrics).index("business_as_usual")] == "0.00"


def test_page_is_self_contained(full_report):
    html = full_report[4].read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html and "//" not in html
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert "<style>" in html


def test_same_inputs_render_the_same_bytes(full_report, tmp_path):
    problem, schedules, metrics, out, _ = full_report
    write_report(tmp_path, problem, schedules, metrics, "GBP", title="Depot <north> & co")
    for rel in ["report.html", *(f"report/{p.name}" for p in (out / "report").glob("*.png"))]:
        assert (tmp_path / rel).read_bytes() == (out / rel).read_bytes(), rel


def test_site_without_battery_or_sessions_leaves_those_plots_out(tmp_path):
    problem = site_problem(battery=False, sessions=False)
    schedules, metrics = priced(problem)
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "soc.png").write_bytes(b"left over from an earlier run")
    page = write_report(tmp_path, problem, schedules, metrics, "EUR", title="no storage")
    assert sorted(p.name for p in (tmp_path / "report").glob("*.png")) == ["power_stack.png", "prices.png"]
    html = page.read_text(encoding="utf-8")
    assert sorted(referenced_images(html)) == ["report/power_stack.png", "report/prices.png"]
    assert "EUR" in html


def test_many_sessions_are_drawn_as_one_readable_image(tmp_path):
    sessions = [
        {"session_id": f"ev{i}", "arrival": i % 6, "departure": 8 + i % 8, "energy_kwh": 15, "max_kw": 11}
        for i in range(14)
    ]
    problem = make_problem(
        {"grid": {"import_limit_kw": 400}}, load=[5] * 16, pv=[0] * 4 + [10] * 8 + [0] * 4, sessions=sessions
    )
    schedules = {"optimized": optimize_site(problem).schedule}
    metrics = {"optimized": compute_metrics(problem, schedules["optimized"])}
    page = write_report(tmp_path, problem, schedules, metrics, "GBP", title="fleet")
    assert_real_png(tmp_path / "report" / "ev_sessions.png")
    assert "saving vs" not in page.read_text(encoding="utf-8")  # no business as usual to save against


def test_report_needs_the_optimized_schedule(tmp_path):
    problem = site_problem()
    frame = grid_only(problem)
    with pytest.raises(InvalidInput, match="optimized"):
        write_report(
            tmp_path, problem, {"grid_only": frame}, {"grid_only": compute_metrics(problem, frame)}, "GBP", "x"
        )


def table_rows(text: str) -> dict[str, list[str]]:
    return {cells[0]: cells[1:] for cells in (line.split() for line in text.splitlines()) if cells}


def test_savings_table_renders_every_schedule(full_report):
    _, _, metrics, _, _ = full_report
    console = Console(record=True, width=150)
    console.print(savings_table(metrics, "GBP"))
    text = console.export_text()
    rows = table_rows(text)
    base = metrics["business_as_usual"]
    for name, m in metrics.items():
        total, energy, demand, peak, ev, shortfall, breach, saving = rows[name]
        assert (total, energy, demand) == (f"{m.total_cost:,.2f}", f"{m.energy_cost:,.2f}", f"{m.demand_cost:,.2f}")
        assert float(peak) == pytest.approx(m.peak_import_kw, abs=0.05)
        assert float(ev) == pytest.approx(m.ev_energy_kwh, abs=0.05)
        assert float(shortfall) == pytest.approx(m.ev_shortfall_kwh, abs=0.05)
        assert float(breach) == pytest.approx(m.breach_kwh, abs=0.05)
        assert saving == f"{base.total_cost - m.total_cost + 0.0:,.2f}"
    assert "GBP" in text and "business_as_usual" in text.splitlines()[-1]


def test_savings_table_fits_a_piped_terminal(full_report):
    console = Console(record=True, width=80)
    console.print(savings_table(full_report[2], "GBP"))
    text = console.export_text()
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
    assert set(full_report[2]) <= set(table_rows(text))  # each schedule on one line, none cut


def test_savings_table_without_business_as_usual_has_no_savings(full_report):
    metrics = {"optimized": full_report[2]["optimized"], "[bold]odd[/bold]": full_report[2]["grid_only"]}
    console = Console(record=True, width=150)
    console.print(savings_table(metrics, "GBP"))
    rows = table_rows(console.export_text())
    # a name is shown as given, not read as markup
    assert rows["optimized"][-1] == "n/a" and rows["[bold]odd[/bold]"][-1] == "n/a"


def test_report_leaves_pyplot_alone(tmp_path):
    # In a fresh interpreter: other tests may have imported pyplot into this one.
    code = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
sys.path.insert(0, {str(Path(__file__).parents[2])!r})
from pathlib import Path
from test_report import site_problem, priced
from sitenode.report import write_report
problem = site_problem()
schedules, metrics = priced(problem)
write_report(Path({str(tmp_path)!r}), problem, schedules, metrics, "GBP", "t")
assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
