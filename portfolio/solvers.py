"""Which solver serves the portfolio's coupled problem: configuration and factory.

```yaml
solver:
  method: auto                 # auto | monolithic | decomposition
  ray_address: null            # else RAY_ADDRESS, else a local Ray started on first use
  num_cpus: null               # CPUs of that local Ray (default: this machine's)
  monolithic_max_sites: 8      # auto: monolithic up to this many sites, decomposition above
  monolithic_max_sites_peak: 16  # the same with a coincident-peak charge (it couples every site)
  gap: 0.001                   # decomposition: stop at this relative gap (certified)
  max_iterations: 200
  time_limit_seconds: 300          # of one solve (the monolithic one too)
```

Both solvers offer `CoupledSolver`; `make_solver` builds the one the config names. The
decomposition (`portfolio.decomposition`) runs on Ray: `ray_address` (or the RAY_ADDRESS
environment variable) joins an existing cluster, such as a KubeRay RayCluster's head
(``ray://head:10001``) whose image has gridmesh installed; otherwise the portfolio
starts a local instance the first time it needs one (a few seconds, once per process).

`monolithic_max_sites` is measured, not guessed: bench/portfolio_solve.py (mixed office,
depot and warehouse sites, 96 steps of 15 min, feeders of about 20 sites with binding caps)
on the 2-core reference machine, wall time of one solve (Ray and its workers already up):

    sites   monolithic   decomposition 1 CPU   2 CPUs
        2        0.27 s       0.27 s            0.32 s
        6        0.89 s       0.80 s            0.96 s
        8        1.31 s       0.69 s            1.23 s
       10        1.59 s       1.07 s            0.65 s
       20        6.92 s       3.65 s            2.31 s
      100       57.8 s       28.9 s            14.8 s
     1000   no plan in 900 s  379 s             239 s

Up to 8 sites the two are equally fast and the monolithic solve is exact (its gap 0 against
the decomposition's up to 0.1 %) and needs no Ray; from 10 sites on the decomposition is
faster, by more the larger the portfolio (the monolithic MIP over every depot's charger
choice grows much faster than linearly). Hence monolithic up to 8 sites. Ray's own start
(5-8 s) and the workers' (about 2 s) are paid once per process, on the first decomposed
solve, or up front with `DecompositionSolver.connect()`.

A coincident-peak charge (`portfolio.coincident_peak_price_per_kw` > 0) couples every site
at every step, so every round re-prices every site and the decomposition needs more rounds
(45-84 against 1-35). Measured with `--peak-price 5 --cpus 2` (on a machine loaded by other
work, so the figures are rough; the same load for both methods of a row):

    sites   monolithic   decomposition 2 CPUs
        4        0.7 s        6.3 s
        8        4.6 s       12.5 s
       12        5.8 s       21.4 s
       20    64-129 s        60.6 s
      100   no plan in 900 s  89.7 s

The crossover lies between 12 and 20 sites: with the charge, monolithic up to 16
(`monolithic_max_sites_peak`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from portfolio.coupled import CoupledSolver, MonolithicSolver, PortfolioPlan, ScheduleEncoder
from portfolio.decomposition import DecompositionSolver
from portfolio.model import Feeder, FlexEvent
from sitenode.model.problem import SiteProblem
from sitenode.model.site import Strict

MONOLITHIC_MAX_SITES = 8  # measured: see the module doc
MONOLITHIC_MAX_SITES_PEAK = 16  # measured with a coincident-peak charge: see the module doc


class SolverConfig(Strict):
    method: Literal["auto", "monolithic", "decomposition"] = "auto"
    ray_address: str | None = None
    num_cpus: Annotated[int, Field(gt=0)] | None = None
    workers: Annotated[int, Field(gt=0)] | None = None  # Ray actors holding sites (default: the cluster's CPUs)
    monolithic_max_sites: Annotated[int, Field(ge=0)] = MONOLITHIC_MAX_SITES
    monolithic_max_sites_peak: Annotated[int, Field(ge=0)] = MONOLITHIC_MAX_SITES_PEAK
    gap: Annotated[float, Field(gt=0, lt=1)] = 1e-3
    max_iterations: Annotated[int, Field(gt=0)] = 200
    time_limit_seconds: Annotated[float, Field(gt=0)] = 300.0
    smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.5
    runtime_env: dict[str, Any] | None = None  # passed to ray.init (e.g. a working_dir for a remote cluster)


class AutoSolver:
    """Monolithic up to `max_sites` sites (`max_sites_peak` under a coincident-peak charge),
    the decomposition above (built on first need)."""

    def __init__(
        self,
        monolithic: MonolithicSolver,
        decomposition: Callable[[], DecompositionSolver],
        max_sites: int,
        max_sites_peak: int | None = None,
    ) -> None:
        self.monolithic, self.max_sites = monolithic, max_sites
        self.max_sites_peak = max_sites if max_sites_peak is None else max_sites_peak
        self._make = decomposition
        self._decomposition: DecompositionSolver | None = None

    @property
    def decomposition(self) -> DecompositionSolver:
        if self._decomposition is None:
            self._decomposition = self._make()
        return self._decomposition

    def pick(self, sites: int, *, peak: bool = False) -> CoupledSolver:
        return self.monolithic if sites <= (self.max_sites_peak if peak else self.max_sites) else self.decomposition

    def solve(
        self,
        problems: Mapping[str, SiteProblem],
        feeders: Sequence[Feeder],
        events: Sequence[FlexEvent],
        *,
        coincident_peak_price_per_kw: float = 0.0,
        reserved_kw: Mapping[str, np.ndarray] | None = None,
    ) -> PortfolioPlan:
        solver = self.pick(len(problems), peak=coincident_peak_price_per_kw > 0)
        return solver.solve(
            problems,
            feeders,
            events,
            coincident_peak_price_per_kw=coincident_peak_price_per_kw,
            reserved_kw=reserved_kw,
        )

    def close(self) -> None:
        if self._decomposition is not None:
            self._decomposition.close()


def make_decomposition(config: SolverConfig, encode: ScheduleEncoder | None = None) -> DecompositionSolver:
    return DecompositionSolver(
        gap=config.gap,
        max_iterations=config.max_iterations,
        time_limit_seconds=config.time_limit_seconds,
        address=config.ray_address,
        num_cpus=config.num_cpus,
        workers=config.workers,
        smoothing=config.smoothing,
        runtime_env=config.runtime_env,
        monolithic=MonolithicSolver(time_limit_seconds=config.time_limit_seconds),
        encode=encode,
    )


def make_solver(config: SolverConfig | None = None, encode: ScheduleEncoder | None = None) -> CoupledSolver:
    """The solver `config` names (default: auto with the measured threshold). `encode`: how the
    decomposition's workers encode each site's schedule (`SitePlan.encoded`)."""
    config = config or SolverConfig()
    monolithic = MonolithicSolver(time_limit_seconds=config.time_limit_seconds)
    if config.method == "monolithic":
        return monolithic
    if config.method == "decomposition":
        return make_decomposition(config, encode)
    return AutoSolver(
        monolithic,
        lambda: make_decomposition(config, encode),
        config.monolithic_max_sites,
        config.monolithic_max_sites_peak,
    )
