"""What the bundle commands do: read a bundle, run it, write its outputs.

`optimize` solves the horizon once with the series as known; `backtest` rolls the
horizon with a forecast; `report` renders what a run left in the bundle. The CLI
only parses arguments and prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sitenode.bundle.io import DISPATCH, BundleInputs, load_bundle, read_dispatch, write_outputs
from sitenode.errors import InvalidInput
from sitenode.metrics import CostBreakdown, compute_metrics, metrics_document
from sitenode.model.problem import SiteProblem
from sitenode.optimizer.highs import VERSION
from sitenode.optimizer.solve import Plan, optimize_site

OPTIMIZED, BAU = "optimized", "business_as_usual"


@dataclass(frozen=True, eq=False)
class RunOutcome:
    inputs: BundleInputs
    schedules: dict[str, pd.DataFrame]  # "optimized" (or realized) first, then each baseline
    metrics: dict[str, CostBreakdown]
    plan: Plan | None = None

    @property
    def currency(self) -> str:
        return self.inputs.run.tariff.currency


def baseline_schedules(problem: SiteProblem) -> dict[str, pd.DataFrame]:
    from sitenode.baselines import BASELINES

    return {name: fn(problem) for name, fn in BASELINES.items()}


def _priced(problem: SiteProblem, schedules: dict[str, pd.DataFrame]) -> dict[str, CostBreakdown]:
    return {name: compute_metrics(problem, frame) for name, frame in schedules.items()}


def optimize_bundle(path: str | Path, engine: str = "direct") -> RunOutcome:
    inputs = load_bundle(path)
    problem = inputs.problem()
    if engine == "pyomo":
        from sitenode.optimizer.pyomo_model import optimize_site_pyomo

        plan = optimize_site_pyomo(problem)
    elif engine == "direct":
        plan = optimize_site(problem)
    else:
        raise InvalidInput.one("engine", f"must be 'direct' or 'pyomo', got {engine!r}")
    schedules = {OPTIMIZED: plan.schedule, **baseline_schedules(problem)}
    metrics = _priced(problem, schedules)
    others = {k: v for k, v in metrics.items() if k not in (OPTIMIZED, BAU)}
    stats = {
        "mode": "optimize",
        **plan.result.to_json(),
        "relaxation": {
            "relaxed": list(plan.relaxation.stages),
            "over_limit_kwh": plan.relaxation.over_limit_kwh,
            "ev_shortfall_kwh": plan.relaxation.ev_shortfall_kwh,
            "breach_kwh": plan.relaxation.breach_kwh,
            "shortfall_by_session": plan.relaxation.shortfall_by_session,
            "flex_shortfall_kwh": plan.relaxation.flex_shortfall_kwh,
            "soc_shortfall_kwh": plan.relaxation.soc_shortfall_kwh,
            "flex_shortfall_by_load": plan.relaxation.flex_shortfall_by_load,
        },
        "charger_assignment": plan.charger_assignment,
    }
    write_outputs(
        inputs,
        plan.schedule,
        metrics_document(metrics[OPTIMIZED], metrics[BAU], inputs.run.tariff.currency, others),
        stats,
        command=f"optimize --engine {engine}",
        solver_version=plan.result.solver_version,
    )
    return RunOutcome(inputs, schedules, metrics, plan)


def backtest_bundle(path: str | Path, progress: Callable[[int, int], None] | None = None) -> RunOutcome:
    from sitenode.backtest import run_backtest

    inputs = load_bundle(path)
    result = run_backtest(inputs, progress=progress)
    problem = inputs.problem()
    schedules = {OPTIMIZED: result.schedule, **baseline_schedules(problem)}
    metrics = _priced(problem, schedules)
    others = {k: v for k, v in metrics.items() if k not in (OPTIMIZED, BAU)}
    stats = {"mode": "backtest", **result.stats_json()}
    write_outputs(
        inputs,
        result.schedule,
        metrics_document(metrics[OPTIMIZED], metrics[BAU], inputs.run.tariff.currency, others),
        stats,
        command="backtest",
        solver_version=VERSION,
    )
    return RunOutcome(inputs, schedules, metrics)


def report_bundle(path: str | Path) -> tuple[RunOutcome, Path]:
    from sitenode.report import write_report

    inputs = load_bundle(path)
    if not (inputs.path / DISPATCH).exists():
        raise InvalidInput.one(
            DISPATCH, f"is missing in {inputs.path}: run `gridmesh optimize` or `gridmesh backtest` first"
        )
    problem = inputs.problem()
    dispatch = read_dispatch(inputs.path)
    if not dispatch.index.equals(problem.index):
        raise InvalidInput.one(DISPATCH, "does not cover the run's horizon step for step: re-run optimize")
    schedules = {OPTIMIZED: dispatch, **baseline_schedules(problem)}
    metrics = _priced(problem, schedules)
    outcome = RunOutcome(inputs, schedules, metrics)
    page = write_report(inputs.path, problem, schedules, metrics, outcome.currency, title=inputs.site.site_id)
    return outcome, page
