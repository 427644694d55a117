"""gridmesh's error tree, drawn once here.

    GridmeshError                  code INTERNAL: a bug or an unexpected failure
    ├── InvalidInput               code INVALID_ARGUMENT: carries FieldViolations
    ├── NotFound                   code NOT_FOUND: an unknown site, asset or session
    ├── FailedPrecondition         code FAILED_PRECONDITION: refused in the current state
    │   └── TransitionRefused      an asset state machine refused a trigger
    ├── Aborted                    code ABORTED: overtaken by a newer request of the same kind
    │   └── Superseded             (sitenode.planning) a newer plan request won
    └── DeadlineExceeded           code DEADLINE_EXCEEDED: work given up past its deadline
        └── PlanAbandoned          (sitenode.planning) a plan past its deadline, nothing applied

Each error carries the name of its gRPC status code as a plain string, so this
package stays free of grpc; `services` maps the name to `grpc.StatusCode` and the
violations to `google.rpc.BadRequest`. An infeasible optimization is not an error:
the optimizer relaxes and reports (see `sitenode.optimizer`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: its dotted path (`battery.soc_min_kwh`) and what is wrong."""

    field: str
    description: str

    def __str__(self) -> str:
        return f"{self.field}: {self.description}"


class GridmeshError(Exception):
    code = "INTERNAL"


class InvalidInput(GridmeshError):
    code = "INVALID_ARGUMENT"

    def __init__(self, violations: Iterable[FieldViolation]) -> None:
        self.violations: tuple[FieldViolation, ...] = tuple(violations)
        if not self.violations:
            raise ValueError("InvalidInput needs at least one violation")
        super().__init__("; ".join(str(v) for v in self.violations))

    @classmethod
    def one(cls, field: str, description: str) -> InvalidInput:
        return cls([FieldViolation(field, description)])

    def prefixed(self, prefix: str) -> InvalidInput:
        """The same violations with their paths under `prefix` (a file or a parent)."""
        return InvalidInput(
            FieldViolation(f"{prefix}.{v.field}" if v.field else prefix, v.description) for v in self.violations
        )


class NotFound(GridmeshError):
    code = "NOT_FOUND"


class FailedPrecondition(GridmeshError):
    code = "FAILED_PRECONDITION"


class Aborted(GridmeshError):
    code = "ABORTED"


class DeadlineExceeded(GridmeshError):
    code = "DEADLINE_EXCEEDED"


class TransitionRefused(FailedPrecondition):
    """A trigger that the machine's current state does not allow, or whose guard said no."""

    def __init__(self, machine: str, asset_id: str, state: str, trigger: str, reason: str) -> None:
        self.machine, self.asset_id, self.state, self.trigger, self.reason = machine, asset_id, state, trigger, reason
        super().__init__(f"{machine} {asset_id}: {trigger!r} refused in state {state}: {reason}")
