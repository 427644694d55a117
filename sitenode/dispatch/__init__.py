"""Dispatch: schedules become device commands, sent with a lifecycle, retries and holds."""

from sitenode.dispatch.commands import AssetRating, Command, CommandState, CommandType, clamp
from sitenode.dispatch.engine import (
    Adapter,
    AdapterError,
    AdapterRegistry,
    CommandStore,
    DispatchEngine,
    RetryPolicy,
)
from sitenode.dispatch.planner import AssetMap, commands_from_schedule

__all__ = [
    "Adapter",
    "AdapterError",
    "AdapterRegistry",
    "AssetMap",
    "AssetRating",
    "Command",
    "CommandState",
    "CommandStore",
    "CommandType",
    "DispatchEngine",
    "RetryPolicy",
    "clamp",
    "commands_from_schedule",
]
