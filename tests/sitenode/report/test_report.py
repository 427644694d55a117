import re

import matplotlib.image
from factories.problems import make_problem
from rich.console import Console

from sitenode.baselines import BASELINES
from sitenode.metrics import compute_metrics
from sitenode.optimizer.solve import optimize_site
from sitenode.report import savings_table, write_report


def test_report_draws_every_plot_and_tabulates_every_schedule(tmp_path):
    sessions = [{"session_id": f"ev{i}", "arrival": i, "departure": 6 + i, "energy_kwh": 20, "max_kw": 11} for i in range(8)]
    p = make_problem({"battery": {"capacity_kwh": 40, "soc_initial_kwh": 20}, "pv": {"curtailable": True}, "grid": {"import_limit_kw": 100}},
                     load=[5] * 16, pv=[0, 0, 5, 10, 20, 20, 10, 5, 0, 0, 0, 0, 0, 0, 0, 0], sessions=sessions)
    schedules = {"optimized": optimize_site(p).schedule, **{name: fn(p) for name, fn in BASELINES.items()}}
    metrics = {name: compute_metrics(p, frame) for name, frame in schedules.items()}
    page = write_report(tmp_path, p, schedules, metrics, "GBP", title="site <t>")
    text = page.read_text()
    images = re.findall(r"src='([^']+)'", text)
    assert len(images) == 4
    for src in images:
        pixels = matplotlib.image.imread(tmp_path / src)
        assert pixels.shape[0] > 200 and pixels.shape[1] > 500 and pixels.std() > 0.01
    assert "site &lt;t&gt;" in text and "<t>" not in text
    for m in metrics.values():
        assert f"{m.total_cost:,.2f}" in text
    assert "http://" not in text and "https://" not in text
    console = Console(record=True, width=160)
    console.print(savings_table(metrics, "GBP"))
    rendered = console.export_text()
    assert all(name in rendered for name in schedules)
