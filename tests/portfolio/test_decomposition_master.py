"""The decomposition's restricted master with feeder rows folded into the peak rows.

The fold is a row operation on the master LP, so the folded master must reach the same
optimum as the master as given, and the prices it hands back (mapped to the rows as given)
must be optimal prices of the master as given: dual feasible on every column, and with a
dual objective equal to the primal one.
"""

from __future__ import annotations

import numpy as np
import pytest

from portfolio.coupled import Coupling
from portfolio.decomposition import PEAK, _folds, _Master
from sitenode.optimizer.result import SolverStatus

T = 6  # steps
FEEDERS = (("f0", ("a", "b")), ("f1", ("c", "d")))
SITES = ("a", "b", "c", "d", "e")  # "e" is in no feeder: only in the peak rows
PRICE = 3.0


def layout(caps: np.ndarray) -> tuple[list[Coupling], np.ndarray, list[np.ndarray], np.ndarray]:
    """Couplings in master-row order (feeders, then the peak), the rows' bounds, each site's rows, the peak rows."""
    couplings = [Coupling(name, members, np.arange(T), caps[k], net=True) for k, (name, members) in enumerate(FEEDERS)]
    couplings.append(Coupling(PEAK, SITES, np.arange(T), np.zeros(T), net=True))
    rhs = np.concatenate([c.bound for c in couplings])
    peak = np.arange(len(FEEDERS) * T, (len(FEEDERS) + 1) * T)
    site_rows = []
    for sid in SITES:
        rows = [k * T + np.arange(T) for k, (_, members) in enumerate(FEEDERS) if sid in members]
        site_rows.append(np.concatenate([*rows, peak]))
    return couplings, rhs, site_rows, peak


def plans(
    rng: np.random.Generator, rows: list[np.ndarray], per_site: int
) -> tuple[list[int], list[float], list[np.ndarray]]:
    """Random site plans: net flows per step, repeated on each of the site's row groups (a
    site's feeder row and its peak row at one step see the same net flow)."""
    gids, costs, avals = [], [], []
    for g, r in enumerate(rows):
        for _ in range(per_site):
            net = rng.uniform(-2.0, 10.0, T)
            gids.append(g)
            costs.append(float(rng.uniform(0.0, 30.0) - 0.5 * net.sum()))
            avals.append(np.tile(net, len(r) // T))
    return gids, costs, avals


def solved(
    master: _Master, gids: list[int], costs: list[float], avals: list[np.ndarray], rows: list[np.ndarray]
) -> tuple[SolverStatus, float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    master.add(gids, costs, avals, rows)
    return master.solve()


@pytest.mark.parametrize("seed", range(8))
def test_a_folded_master_has_the_optimum_and_prices_of_the_master_as_given(seed: int) -> None:
    rng = np.random.default_rng(seed)
    caps = rng.uniform(6.0, 14.0, (len(FEEDERS), T))
    couplings, rhs, rows, peak = layout(caps)
    penalty = np.full(len(rhs), 50.0)
    gids, costs, avals = plans(rng, rows, per_site=4)
    local = np.arange(len(rhs))  # the block holds every row
    fold = _folds(couplings, local, peak)
    assert fold is not None and (fold[: len(FEEDERS) * T] >= 0).all() and (fold[peak] < 0).all()

    plain = solved(_Master(rhs, penalty, len(SITES), peak, PRICE), gids, costs, avals, rows)
    folded = solved(_Master(rhs, penalty, len(SITES), peak, PRICE, fold), gids, costs, avals, rows)
    assert plain[0] is folded[0] is SolverStatus.OPTIMAL
    assert folded[1] == pytest.approx(plain[1], rel=1e-7, abs=1e-7)
    _, objective, _, _, mu, sigma = folded

    # dual feasibility of every column of the master as given, at the mapped prices
    for g, cost, a in zip(gids, costs, avals, strict=True):
        assert cost + float(mu[rows[g]] @ a) - sigma[g] >= -1e-6
    assert (mu <= penalty + 1e-7).all()  # the artificials' reduced costs
    assert float(mu[peak].sum()) <= PRICE + 1e-7  # P's reduced cost
    # strong duality: the prices are optimal, not merely feasible
    assert float(sigma.sum() - mu @ rhs) == pytest.approx(objective, rel=1e-6, abs=1e-6)


def test_only_disjoint_feeders_fold_at_a_step() -> None:
    caps = np.full((len(FEEDERS), T), 10.0)
    couplings, _, _, peak = layout(caps)
    # a third feeder over sites already folded ("a" in f0) stays a row of its own
    nested = Coupling("f2", ("a", "e"), np.arange(T), np.full(T, 5.0), net=True)
    rows = np.arange((len(FEEDERS) + 2) * T)
    fold = _folds([*couplings[:-1], nested, couplings[-1]], rows, peak + T)
    assert fold is not None
    assert (fold[: len(FEEDERS) * T] >= 0).all()
    assert (fold[len(FEEDERS) * T : (len(FEEDERS) + 1) * T] == -1).all()
    # an event (import alone) never folds
    event = Coupling("ev", ("e",), np.arange(T), np.full(T, 5.0), net=False)
    fold = _folds([*couplings[:-1], event, couplings[-1]], rows, peak + T)
    assert fold is not None and (fold[len(FEEDERS) * T : (len(FEEDERS) + 1) * T] == -1).all()
