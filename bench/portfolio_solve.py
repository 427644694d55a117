"""Portfolio solve benchmark: the monolithic HiGHS solve against the Ray decomposition.

    python bench/portfolio_solve.py --sites N[,N...] [--out FILE] [--monolithic-limit S] [--cpus 1,2] [--peak-price P]

N sites x 96 steps of 15 min (mixed office, depot and warehouse sites built from
examples/bundles, loads, PV and sessions varied per site), in feeders of about 20 sites
whose caps bind (a fraction of what the sites would draw together planning alone), and a
coincident-peak charge of `--peak-price` per kW of the portfolio's peak net import over the
horizon (default 5, in the range of the example sites' own demand charges, 6-14 per kW; 0
gives the instance without it, as measured in portfolio/solvers.py). The problems are built
once; each method then runs in its own process, so its peak memory is its own: the
monolithic solve, and the decomposition with Ray limited to each of `--cpus` (the process
starts its own local Ray instance; its start is timed apart). Per method the JSON (default
bench/results/portfolio_solve.json) has `objective` (the coupled "cost" term, peak charge
included), `bound`, `gap`, `seconds`, `iterations`, `peak_rss_mb` (the driver's, plus the
Ray workers' for the decomposition) and `max_coupling_violation_kw` (read off the extracted schedules),
and besides them `peak_price`, `peak_kw`, `alone_peak_kw` and `peak_charge`.
Goal (issue 6): gap <= 0.1 %, and at 1,000 sites faster than monolithic on 2 cores.
"""

from __future__ import annotations

import benchpath  # noqa: F401 - first: keeps bench/ from shadowing the sitenode package
import argparse
import json
import multiprocessing as mp
import os
import pickle
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from portfolio.model import Feeder
from sitenode.bundle.io import load_bundle
from sitenode.model.problem import SiteProblem, build_problem
from sitenode.model.run import RunConfig
from sitenode.model.sessions import EVSession
from sitenode.model.site import SiteConfig
from sitenode.model.timeseries import check_series
from sitenode.schedule import GRID_EXPORT, GRID_IMPORT

ROOT = Path(__file__).resolve().parent.parent
START = pd.Timestamp("2025-06-11T16:00:00Z")  # noon in New York, where the example sites are
STEPS = 96
KINDS = ("office", "depot", "warehouse")
FEEDER_SIZE = 20
CAP_FRACTION = 0.7  # of the feeder's peak when its sites plan alone (their night charging)
EVENING = slice(16, 40)  # 16:00-22:00 local: a cap never asks for less than the sites draw then alone
PEAK_PRICE = 5.0  # per kW of the portfolio's peak net import, per horizon (--peak-price)


def _templates() -> dict[str, Any]:
    out = {}
    for kind in KINDS:
        b = load_bundle(ROOT / "examples" / "bundles" / kind)
        # 96 steps from the first local noon of the bundle's horizon: every site then shares
        # START's time of day, and a depot's vans arrive in the evening and leave in the morning
        local = b.series.index.tz_convert(b.site.timezone)
        noon = (local.hour == 12) & (local.minute == 0) & (b.series.index >= pd.Timestamp(b.run.horizon.start))
        first = int(np.flatnonzero(noon)[0])
        window = b.series.iloc[first : first + STEPS]
        out[kind] = (b, window, b.series.index[first])
    return out


def make_portfolio(n: int, seed: int = 0) -> dict[str, SiteProblem]:
    """`n` site problems over START + 96 x 15 min: offices, depots and warehouses in turn."""
    rng = np.random.default_rng(seed)
    templates = _templates()
    problems = {}
    for i in range(n):
        kind = KINDS[i % 3]
        b, window, origin = templates[kind]
        sid = f"{kind}-{i:04d}"
        site = SiteConfig.model_validate({**b.site.model_dump(mode="json"), "site_id": sid})
        run = RunConfig.model_validate(
            {
                **b.run.model_dump(mode="json"),
                "horizon": {"start": START.isoformat(), "step_minutes": 15, "steps": STEPS},
            }
        )
        frame = window.reset_index(drop=True).copy()
        frame["load_kw"] = frame["load_kw"] * rng.uniform(0.6, 1.4) * rng.uniform(0.9, 1.1, STEPS)
        frame["pv_kw"] = frame["pv_kw"] * rng.uniform(0.5, 1.5) * rng.uniform(0.85, 1.0, STEPS)
        frame.insert(0, "timestamp", pd.date_range(START, periods=STEPS, freq="15min"))
        series = check_series(frame, run.horizon, run.tariff)
        shift = START - origin
        sessions = [
            EVSession(
                **{
                    **s.model_dump(),
                    "arrival": s.arrival + shift + pd.Timedelta(minutes=15 * int(rng.integers(-2, 3))),
                    "departure": s.departure + shift + pd.Timedelta(minutes=15 * int(rng.integers(-2, 3))),
                    "energy_kwh": round(s.energy_kwh * float(rng.uniform(0.7, 1.1)), 1),
                }
            )
            for s in b.sessions
        ]
        problems[sid] = build_problem(site, run, series, sessions)
    return problems


def _alone_net(item: tuple[str, SiteProblem]) -> tuple[str, np.ndarray]:
    from sitenode.optimizer.solve import optimize_site

    sid, problem = item
    s = optimize_site(problem).schedule
    return sid, s[GRID_IMPORT].to_numpy() - s[GRID_EXPORT].to_numpy()


def make_feeders(
    problems: dict[str, SiteProblem],
    seed: int = 0,
    size: int = FEEDER_SIZE,
    fraction: float = CAP_FRACTION,
    processes: int = 2,
) -> list[Feeder]:
    """Feeders of about `size` sites (shuffled), each capped at `fraction` of its sites' peak alone.

    The sites' peak alone is their night charging (batteries and vans, at the off-peak price):
    the cap spreads it into dearer hours, so it binds and costs something. It never goes
    below what the sites draw alone in the evening peak, so the portfolio stays feasible.
    """
    rng = np.random.default_rng(seed + 1)
    ids = list(problems)
    rng.shuffle(ids)
    with mp.get_context("spawn").Pool(processes) as pool:
        net = dict(pool.map(_alone_net, problems.items(), chunksize=8))
    feeders = []
    count = max(1, round(len(ids) / size))
    for k, members in enumerate(np.array_split(np.array(ids), count)):
        total = sum(net[s] for s in members)
        cap = max(fraction * float(total.max()), 1.02 * float(total[EVENING].max()))
        feeders.append(Feeder(feeder_id=f"f{k:03d}", site_ids=list(members), cap_kw=round(cap, 1)))
    return feeders


# ---- measuring, one method per process ----------------------------------------------------


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _summary(plan: Any, seconds: float, extra: dict[str, Any]) -> dict[str, Any]:
    result = next(iter(plan.sites.values())).plan.result
    violation = 0.0
    for check in plan.feeders:
        violation = max(violation, check.max_excess_kw)
    return {
        "method": plan.method,
        "status": plan.status,
        "objective": result.objective,
        "bound": plan.bound,
        "gap": plan.gap,
        "seconds": seconds,
        "iterations": plan.iterations,
        "max_coupling_violation_kw": violation,
        "portfolio_total_cost": plan.objective,
        "coupling_cost": plan.coupling_cost,
        "all_hold": plan.all_hold,
        "binding_steps": sum(c.binding_steps for c in plan.feeders),
        "peak_kw": plan.peak_kw,
        "alone_peak_kw": plan.alone_peak_kw,
        "peak_charge": plan.peak_charge,
        **extra,
    }


def _measure(path: str, method: str, cpus: int, time_limit: float, queue: Any) -> None:
    with open(path, "rb") as fh:
        problems, feeders, price = pickle.load(fh)
    if method == "monolithic":
        from portfolio.coupled import MonolithicSolver

        started = time.perf_counter()
        plan = MonolithicSolver(time_limit_seconds=time_limit).solve(
            problems, feeders, [], coincident_peak_price_per_kw=price
        )
        queue.put(_summary(plan, time.perf_counter() - started, {"peak_rss_mb": _rss_mb(), "cpus": 1}))
        return
    import ray

    from portfolio.decomposition import DecompositionSolver

    started = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - started
    solver = DecompositionSolver(time_limit_seconds=time_limit)
    started = time.perf_counter()
    solver.connect()
    workers_start = time.perf_counter() - started
    started = time.perf_counter()
    plan = solver.solve(problems, feeders, [], coincident_peak_price_per_kw=price)
    seconds = time.perf_counter() - started
    workers = solver.worker_peak_rss_mb()
    st = solver.stats
    queue.put(
        _summary(
            plan,
            seconds,
            {
                "peak_rss_mb": _rss_mb() + sum(workers),
                "driver_rss_mb": _rss_mb(),
                "worker_rss_mb": workers,
                "cpus": cpus,
                "ray_start_seconds": ray_start,
                "workers_start_seconds": workers_start,
                "load_seconds": st.load_seconds,
                "master_seconds": st.master_seconds,
                "pricing_seconds": st.pricing_seconds,
                "finish_seconds": st.finish_seconds,
                "columns": st.columns,
                "resolved_sites": st.resolved_sites,
                "fallback_reason": st.fallback_reason,
                "settle_seconds": st.settle_seconds,
                "share_seconds": st.share_seconds,
                "settled_over_budget": st.settled_over,
            },
        )
    )
    solver.close()
    ray.shutdown()


def measure(path: str, method: str, cpus: int, time_limit: float) -> dict[str, Any]:
    """One method in a process of its own; the machine's load average (1 min) before and after."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(path, method, cpus, time_limit, queue))
    load = os.getloadavg()[0]
    proc.start()
    try:
        return {**queue.get(timeout=time_limit * 3 + 600), "load_before": load, "load_after": os.getloadavg()[0]}
    except Exception as exc:  # noqa: BLE001 - a crashed or killed solve is a result too
        return {"method": method, "cpus": cpus, "error": repr(exc), "exitcode": proc.exitcode}
    finally:
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", default="10,100,1000", help="site counts, comma separated")
    parser.add_argument("--out", default="bench/results/portfolio_solve.json")
    parser.add_argument("--cpus", default="1,2", help="Ray CPU limits for the decomposition")
    parser.add_argument("--monolithic-limit", type=float, default=900.0, help="time limit of the monolithic solve (s)")
    parser.add_argument("--limit", type=float, default=600.0, help="time limit of the decomposition (s)")
    parser.add_argument("--skip-monolithic", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--peak-price", type=float, default=PEAK_PRICE, help="coincident-peak charge per kW per horizon (0: none)"
    )
    args = parser.parse_args()
    rows = []
    for n in (int(v) for v in args.sites.split(",")):
        started = time.perf_counter()
        problems = make_portfolio(n, args.seed)
        feeders = make_feeders(problems, args.seed)
        setup = time.perf_counter() - started
        with tempfile.NamedTemporaryFile(suffix=".pkl", delete=False) as fh:
            pickle.dump((problems, feeders, args.peak_price), fh)
            path = fh.name
        methods = [] if args.skip_monolithic else [("monolithic", 1, args.monolithic_limit)]
        methods += [("decomposition", int(c), args.limit) for c in args.cpus.split(",")]
        for method, cpus, limit in methods:
            row = {
                "sites": n,
                "steps": STEPS,
                "feeders": len(feeders),
                "peak_price": args.peak_price,
                "setup_seconds": setup,
                **measure(path, method, cpus, limit),
            }
            rows.append(row)
            Console(width=160).print({k: v for k, v in row.items() if not isinstance(v, list)})
        Path(path).unlink()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "portfolio_solve", "results": rows}, indent=2, default=float) + "\n")
    table = Table(title=f"portfolio solve ({out})")
    for col in (
        "sites",
        "method",
        "cpus",
        "status",
        "seconds",
        "objective",
        "bound",
        "gap",
        "iter",
        "peak RSS MB",
        "max viol kW",
        "peak kW",
        "load",
    ):
        table.add_column(col)
    for r in rows:
        if "error" in r:
            table.add_row(
                str(r["sites"]),
                r["method"],
                str(r["cpus"]),
                "error",
                "-",
                "-",
                "-",
                "-",
                "-",
                "-",
                r["error"][:40],
                "-",
                "-",
            )
            continue
        table.add_row(
            str(r["sites"]),
            r["method"],
            str(r["cpus"]),
            r["status"],
            f"{r['seconds']:.1f}",
            f"{r['objective']:.2f}",
            f"{r['bound']:.2f}",
            f"{r['gap']:.2e}",
            str(r["iterations"]),
            f"{r['peak_rss_mb']:.0f}",
            f"{r['max_coupling_violation_kw']:.1e}",
            f"{r['peak_kw']:.0f} / {r['alone_peak_kw']:.0f}",
            f"{r['load_before']:.1f}",
        )
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
