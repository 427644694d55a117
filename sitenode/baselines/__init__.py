"""The schedules gridmesh's optimum is compared against, all in the canonical columns.

* business as usual: EVs at full power on arrival, battery idle (BUNDLE.md)
* Layer 3's greedy cheapest-slot EV fill by priority, then deadline
* Layer 3's two-pass peak shaving
* Module 11's priority allocation
"""

from collections.abc import Callable

import pandas as pd

from sitenode.baselines.bau import business_as_usual
from sitenode.baselines.greedy import greedy_cheapest_slot
from sitenode.baselines.peak_shaving import two_pass_peak_shaving
from sitenode.baselines.priority import priority_allocation
from sitenode.model.problem import SiteProblem

BASELINES: dict[str, Callable[[SiteProblem], pd.DataFrame]] = {
    "business_as_usual": business_as_usual,
    "greedy_cheapest_slot": greedy_cheapest_slot,
    "two_pass_peak_shaving": two_pass_peak_shaving,
    "priority_allocation": priority_allocation,
}

__all__ = ["BASELINES", "business_as_usual", "greedy_cheapest_slot", "priority_allocation", "two_pass_peak_shaving"]
