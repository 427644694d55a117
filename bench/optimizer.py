"""Optimizer benchmark: a depot day, a year of 15-minute steps, and the fleet charger MIP.

    python bench/optimizer.py [--out FILE] [--engines direct,pyomo] [--repeat N] [--skip-year]

Each scenario runs in its own process so its peak memory is its own. Writes JSON
(default bench/results/optimizer.json) and prints a table. Goals (issue 2):
day median build+solve+extract <= 30 ms; year total <= 1.5 x HiGHS's own run time;
fleet MIP (50 sessions, 20 AC/DC chargers) <= 2 s to a 0.1 % gap.
"""

from __future__ import annotations

import benchpath  # noqa: F401 - first: keeps bench/ from shadowing the sitenode package
import argparse
import json
import multiprocessing as mp
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from sitenode.model.problem import SiteProblem, build_problem
from sitenode.model.run import RunConfig
from sitenode.model.sessions import EVSession
from sitenode.model.site import SiteConfig
from sitenode.model.timeseries import check_series
from sitenode.model.validation import parse

START = pd.Timestamp("2025-01-06T00:00:00Z")
TOU = [
    {"name": "night", "rate": 0.09, "schedule": {"start_time": "00:00", "end_time": "06:59"}},
    {"name": "day", "rate": 0.18, "schedule": {"start_time": "07:00", "end_time": "15:59"}},
    {"name": "peak", "rate": 0.32, "schedule": {"start_time": "16:00", "end_time": "19:59"}},
    {"name": "evening", "rate": 0.18, "schedule": {"start_time": "20:00", "end_time": "23:59"}},
]


def _series(steps: int, seed: int, pv_kwp: float, load_kw: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    index = pd.date_range(START, periods=steps, freq="15min")
    hour = index.hour + index.minute / 60
    day = np.asarray(index.day_of_year)
    season = 0.6 + 0.4 * np.sin((day - 80) / 365 * 2 * np.pi)
    pv = pv_kwp * season * np.clip(np.sin((hour - 6) / 12 * np.pi), 0, None) * rng.uniform(0.6, 1.0, steps)
    load = load_kw * (0.6 + 0.4 * ((hour > 7) & (hour < 19))) * rng.uniform(0.85, 1.15, steps)
    return pd.DataFrame(
        {
            "timestamp": index,
            "load_kw": load,
            "pv_kw": pv,
            "carbon_kg_per_kwh": 0.3 + 0.1 * np.cos(hour / 24 * 2 * np.pi),
        }
    )


def _run(steps: int, demand: bool) -> RunConfig:
    charges = (
        [{"name": "evening", "rate_per_kw": 12.0, "schedule": {"start_time": "16:00", "end_time": "19:59"}}]
        if demand
        else []
    )
    return parse(
        RunConfig,
        {
            "horizon": {"start": START.isoformat(), "step_minutes": 15, "steps": steps},
            "tariff": {"energy_rates": TOU, "export_rate": 0.04, "demand_charges": charges},
            "solver": {"time_limit_seconds": 10, "mip_rel_gap": 0.001},
        },
    )


BATTERY = {
    "capacity_kwh": 400,
    "soc_initial_kwh": 200,
    "soc_min_kwh": 40,
    "soc_max_kwh": 380,
    "max_charge_kw": 150,
    "max_discharge_kw": 150,
    "charge_efficiency": 0.95,
    "discharge_efficiency": 0.95,
    "degradation_cost_per_kwh": 0.01,
}


def _sessions(n: int, seed: int, charger_ids: list[str] | None) -> list[EVSession]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        arrive = START + pd.Timedelta(minutes=15 * int(rng.integers(0, 40)))
        leave = arrive + pd.Timedelta(minutes=15 * int(rng.integers(24, 52)))
        charger = charger_ids[i % len(charger_ids)] if charger_ids else None
        out.append(
            EVSession(
                session_id=f"ev{i:02d}",
                arrival=arrive,
                departure=min(leave, START + pd.Timedelta(hours=24)),
                energy_kwh=float(rng.uniform(10, 45)),
                max_kw=float(rng.choice([11.0, 22.0, 50.0])),
                priority=int(rng.integers(1, 4)),
                charger_id=charger,
            )
        )
    return out


def day_problem() -> SiteProblem:
    """One day, 96 x 15 min: battery, PV and 20 EV sessions, each on its own named charger."""
    chargers = [
        {"id": f"cp{i:02d}", "max_kw": 22.0 if i < 14 else 50.0, "kind": "ac" if i < 14 else "dc"} for i in range(20)
    ]
    site = parse(
        SiteConfig,
        {
            "site_id": "bench-day",
            "timezone": "Europe/London",
            "grid": {"import_limit_kw": 500, "export_limit_kw": 100, "breach_margin": 0.2},
            "battery": BATTERY,
            "pv": {"curtailable": True},
            "chargers": chargers,
        },
    )
    run = _run(96, demand=True)
    series = check_series(_series(96, 1, 200, 80), run.horizon, run.tariff)
    return build_problem(site, run, series, _sessions(20, 2, [c["id"] for c in chargers]))


def year_problem() -> SiteProblem:
    """One year, 35,040 x 15 min: battery, PV and a daily evening demand-charge window."""
    site = parse(
        SiteConfig,
        {
            "site_id": "bench-year",
            "timezone": "Europe/London",
            "grid": {"import_limit_kw": 400, "export_limit_kw": 150},
            "battery": BATTERY,
            "pv": {"curtailable": True},
        },
    )
    run = _run(35_040, demand=True)
    series = check_series(_series(35_040, 3, 250, 120), run.horizon, run.tariff)
    return build_problem(site, run, series)


def _fleet_sessions(n: int, seed: int) -> list[EVSession]:
    """Shift vehicles over a day: stays of 2-8 h, some needing more than AC can give in time."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        arrive = START + pd.Timedelta(minutes=15 * int(rng.integers(0, 80)))
        stay_steps = int(rng.integers(8, 33))
        max_kw = float(rng.choice([22.0, 50.0, 100.0]))
        energy = min(80.0, float(rng.uniform(0.3, 1.0)) * stay_steps / 4 * min(max_kw, 60.0) * 0.8)
        leave = min(arrive + pd.Timedelta(minutes=15 * stay_steps), START + pd.Timedelta(hours=24))
        out.append(
            EVSession(
                session_id=f"ev{i:02d}",
                arrival=arrive,
                departure=leave,
                energy_kwh=energy,
                max_kw=max_kw,
                priority=int(rng.integers(1, 4)),
            )
        )
    return out


def fleet_problem() -> SiteProblem:
    """50 sessions over a day choosing among 12 AC (22 kW) and 8 DC (60 kW) chargers: a MIP."""
    chargers = [{"id": f"ac{i:02d}", "max_kw": 22.0, "kind": "ac"} for i in range(12)]
    chargers += [{"id": f"dc{i:02d}", "max_kw": 60.0, "kind": "dc"} for i in range(8)]
    site = parse(
        SiteConfig,
        {
            "site_id": "bench-fleet",
            "timezone": "Europe/London",
            "grid": {"import_limit_kw": 600, "breach_margin": 0.2},
            "chargers": chargers,
        },
    )
    run = _run(96, demand=False)
    series = check_series(_series(96, 4, 0, 60), run.horizon, run.tariff)
    return build_problem(site, run, series, _fleet_sessions(50, 5))


def fleet_overloaded_problem() -> SiteProblem:
    """The same chargers with 50 long overnight-style stays (up to 47 at once): shortfall is
    unavoidable, so every lexicographic stage runs as a MIP under the shared time limit."""
    site = fleet_problem().site
    run = _run(96, demand=False)
    series = check_series(_series(96, 4, 0, 60), run.horizon, run.tariff)
    return build_problem(site, run, series, _sessions(50, 5, None))


SCENARIOS = {
    "day": day_problem,
    "year": year_problem,
    "fleet_mip": fleet_problem,
    "fleet_mip_overloaded": fleet_overloaded_problem,
}


def _solve(engine: str, problem: SiteProblem):  # noqa: ANN202
    if engine == "pyomo":
        from sitenode.optimizer.pyomo_model import optimize_site_pyomo

        return optimize_site_pyomo(problem)
    from sitenode.optimizer.solve import optimize_site

    return optimize_site(problem)


def _measure(scenario: str, engine: str, repeat: int, queue: Any) -> None:
    problem = SCENARIOS[scenario]()
    walls, plans = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        plan = _solve(engine, problem)
        walls.append(time.perf_counter() - started)
        plans.append(plan)
    r = plans[len(plans) // 2].result
    queue.put(
        {
            "scenario": scenario,
            "engine": engine,
            "steps": problem.steps,
            "sessions": len(problem.sessions),
            "status": str(r.status),
            "objective": r.objective,
            "gap": r.gap,
            "repeat": repeat,
            "median_total_seconds": statistics.median(walls),
            "build_seconds": statistics.median(p.result.build_seconds for p in plans),
            "solve_seconds": statistics.median(p.result.solve_seconds for p in plans),
            "highs_seconds": statistics.median(p.result.highs_seconds for p in plans),
            "extract_seconds": statistics.median(p.result.extract_seconds for p in plans),
            "overhead_ratio": statistics.median(
                w / max(p.result.highs_seconds, 1e-9) for w, p in zip(walls, plans, strict=True)
            ),
            "num_cols": r.num_cols,
            "num_rows": r.num_rows,
            "num_integer": r.num_integer,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )


def measure(scenario: str, engine: str, repeat: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(scenario, engine, repeat, queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/optimizer.json")
    parser.add_argument("--engines", default="direct,pyomo")
    parser.add_argument("--repeat", type=int, default=21, help="runs of the day scenario (median)")
    parser.add_argument("--skip-year", action="store_true")
    args = parser.parse_args()
    rows = []
    for engine in args.engines.split(","):
        for scenario in SCENARIOS:
            if scenario == "year" and args.skip_year:
                continue
            repeat = args.repeat if scenario == "day" else 5 if scenario == "fleet_mip" else 1
            rows.append(measure(scenario, engine, repeat))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "optimizer", "results": rows}, indent=2) + "\n")
    table = Table(title=f"optimizer benchmark ({out})")
    for col in (
        "scenario",
        "engine",
        "status",
        "median total s",
        "build s",
        "HiGHS s",
        "extract s",
        "total/HiGHS",
        "gap",
        "cols",
        "int",
        "peak RSS MB",
    ):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["scenario"],
            r["engine"],
            r["status"],
            f"{r['median_total_seconds']:.4f}",
            f"{r['build_seconds']:.4f}",
            f"{r['highs_seconds']:.4f}",
            f"{r['extract_seconds']:.4f}",
            f"{r['overhead_ratio']:.2f}",
            f"{r['gap']:.2e}",
            str(r["num_cols"]),
            str(r["num_integer"]),
            f"{r['peak_rss_mb']:.0f}",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
