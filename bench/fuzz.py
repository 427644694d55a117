"""Fuzzing benchmark: malformed input against the SiteNode and Portfolio gRPC servers, the
OCPP central system and the SunSpec battery adapter, each in this process on loopback.

    python bench/fuzz.py [--inputs N] [--seed S] [--targets sitenode portfolio ocpp sunspec] [--out FILE]

Goals (issue part "Fuzzing"): N (default 100,000) inputs per target with no crash, the server
up, the other session alive and RSS growth after warm-up <= 10 %. What each target sends is
in bench/fuzz_grpc.py and bench/fuzz_devices.py; the mutators in bench/fuzz_common.py.
"""

from __future__ import annotations

import benchpath  # noqa: F401 - first: keeps bench/ from shadowing the sitenode package
import argparse
import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from fuzz_common import Report
from fuzz_devices import ocpp_target, sunspec_target
from fuzz_grpc import portfolio_target, sitenode_target
from rich.console import Console
from rich.table import Table

TARGETS: dict[str, Callable[[int, int], Awaitable[Report]]] = {
    "sitenode": sitenode_target,
    "portfolio": portfolio_target,
    "ocpp": ocpp_target,
    "sunspec": sunspec_target,
}
RSS_GROWTH_LIMIT_PCT = 10.0


def passed(report: Report) -> bool:
    return (
        report.crashes == 0
        and report.server_up
        and report.other_session_alive
        and report.rss_growth_pct <= RSS_GROWTH_LIMIT_PCT
    )


def run(targets: list[str], inputs: int, seed: int) -> list[Report]:
    # what the servers log about each refused input (and grpc's traceback per undecodable request) is noise here
    logging.basicConfig(level=logging.CRITICAL)
    return [asyncio.run(TARGETS[name](inputs, seed)) for name in targets]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="inputs per target")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--targets", nargs="+", choices=list(TARGETS), default=list(TARGETS))
    parser.add_argument("--out", default="bench/results/fuzz.json")
    args = parser.parse_args()
    reports = run(args.targets, args.inputs, args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    body = {"benchmark": "fuzz", "seed": args.seed, "results": [r.as_dict() | {"passed": passed(r)} for r in reports]}
    out.write_text(json.dumps(body, indent=2) + "\n")
    table = Table(title=f"fuzzing ({out})")
    for col in ("target", "inputs", "inputs/s", "crashes", "server up", "other session", "RSS warm→end MB", "growth"):
        table.add_column(col)
    for r in reports:
        table.add_row(
            r.target,
            str(r.inputs),
            f"{r.rate:.0f}",
            str(r.crashes),
            "yes" if r.server_up else "NO",
            "alive" if r.other_session_alive else "DROPPED",
            f"{r.rss_warm_kb / 1024:.0f}→{r.rss_end_kb / 1024:.0f}",
            f"{r.rss_growth_pct:+.1f} %",
        )
    Console().print(table)
    for r in reports:
        for note in r.notes:
            Console().print(f"[red]{r.target}[/red]: {note}")
    raise SystemExit(0 if all(passed(r) for r in reports) else 1)


if __name__ == "__main__":
    main()
