"""Business as usual (shared/BUNDLE.md; the fleet charge scheduler's "BAU" mode).

EVs charge at full power on arrival until full, the battery idles, flexible loads run
whenever their value exceeds the price. Site limits are ignored: that is the point of
the comparison.
"""

from __future__ import annotations

import pandas as pd

from sitenode.baselines.common import (
    charge_on_arrival,
    finish_battery,
    flex_when_worth_it,
    settle_grid,
)
from sitenode.model.problem import SiteProblem
from sitenode.schedule import schedule_columns


def business_as_usual(problem: SiteProblem) -> pd.DataFrame:
    columns = schedule_columns(problem)
    charge_on_arrival(problem, columns)
    flex_when_worth_it(problem, columns)
    finish_battery(problem, columns)
    settle_grid(problem, columns)
    return pd.DataFrame(columns, index=problem.index)
