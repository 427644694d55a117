"""`gridmesh`: the command line. Parses arguments, calls the domain, prints; nothing else.

Bad input prints each field error and exits 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sitenode.errors import GridmeshError, InvalidInput

if TYPE_CHECKING:  # imported lazily at run time: the CLI starts without pandas and HiGHS
    from sitenode.bundle.runner import RunOutcome

EXIT_BAD_INPUT = 2
SERVICES = frozenset({"sitenode", "portfolio", "dashboard", "sim"})
OUR_LOGGERS = ("services", "sitenode", "portfolio", "gridmesh")


def _configure_logging(level: str, fmt: str = "text") -> None:
    """A service's own log lines (solves, connections, mode changes, one per RPC that changes
    something) to stderr at `level`, as text or JSON lines (`fmt`); the libraries' (ocpp logs
    every frame at INFO, Ray and pymodbus their chatter) at WARNING, so a day's log stays readable."""
    from services.logging_setup import configure

    configure(level, fmt, OUR_LOGGERS, sys.stderr)


def _validate(args: argparse.Namespace, out: Console) -> int:
    from sitenode.bundle import load_bundle

    inputs = load_bundle(args.bundle)
    problem = inputs.problem()
    out.print(
        f"[green]valid[/green]: site {inputs.site.site_id}, {problem.steps} steps of {problem.step_minutes} min "
        f"from {problem.start.isoformat()}, {len(inputs.sessions)} EV sessions"
    )
    return 0


def _print_table(outcome: RunOutcome, out: Console) -> None:
    from sitenode.report import savings_table

    out.print(savings_table(outcome.metrics, outcome.currency))


def _optimize(args: argparse.Namespace, out: Console) -> int:
    from sitenode.bundle.runner import optimize_bundle

    outcome = optimize_bundle(args.bundle, engine=args.engine)
    assert outcome.plan is not None  # optimize_bundle always returns the plan it solved
    r, relax = outcome.plan.result, outcome.plan.relaxation
    out.print(
        f"{r.status} in {r.total_seconds * 1000:.1f} ms (build {r.build_seconds * 1000:.1f}, "
        f"HiGHS {r.highs_seconds * 1000:.1f}, extract {r.extract_seconds * 1000:.1f}); "
        f"{r.num_cols} columns, {r.num_rows} rows, {r.num_integer} integer"
    )
    if relax.relaxed:
        out.print(
            f"[yellow]relaxed[/yellow] {', '.join(relax.stages)}: EV shortfall {relax.ev_shortfall_kwh:.2f} kWh, "
            f"breach {relax.breach_kwh:.2f} kWh, over limit {relax.over_limit_kwh:.2f} kWh"
        )
    _print_table(outcome, out)
    return 0


def _backtest(args: argparse.Namespace, out: Console) -> int:
    from sitenode.bundle.runner import backtest_bundle

    with Progress(TextColumn("backtest"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=out) as bar:
        task = bar.add_task("solves", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        outcome = backtest_bundle(args.bundle, progress=advance)
    _print_table(outcome, out)
    return 0


def _report(args: argparse.Namespace, out: Console) -> int:
    from sitenode.bundle.runner import report_bundle

    _, page = report_bundle(args.bundle)
    out.print(f"report: {page}")
    return 0


def _sitenode_serve(args: argparse.Namespace, out: Console) -> int:
    import asyncio
    from pathlib import Path

    from services.node_main import ServeArgs, serve

    asyncio.run(
        serve(
            ServeArgs(
                Path(args.config),
                args.listen,
                args.insecure_loopback,
                Path(args.tls_cert) if args.tls_cert else None,
                Path(args.tls_key) if args.tls_key else None,
            )
        )
    )
    return 0


def _portfolio_serve(args: argparse.Namespace, out: Console) -> int:
    import asyncio
    from pathlib import Path

    from services.portfolio_main import PortfolioArgs, serve

    asyncio.run(serve(PortfolioArgs(Path(args.config), args.listen, args.insecure_loopback)))
    return 0


def _dashboard(args: argparse.Namespace, out: Console) -> int:
    import asyncio
    from pathlib import Path

    from services.dashboard.main import DashboardArgs, run

    def path(value: str | None) -> Path | None:
        return Path(value) if value else None

    asyncio.run(
        run(
            DashboardArgs(
                args.portfolio,
                args.listen,
                path(args.ca),
                path(args.cert),
                path(args.key),
                args.insecure_loopback,
                path(args.tls_cert),
                path(args.tls_key),
            )
        )
    )
    return 0


def _demo(args: argparse.Namespace, out: Console) -> int:
    from pathlib import Path

    from services.demo import main

    if not 0 < args.hours <= 48:
        raise InvalidInput.one("hours", f"must be in (0, 48], got {args.hours:g}")
    if args.speed is not None and not 1 <= args.speed <= 5000:
        raise InvalidInput.one("speed", f"must be in [1, 5000], got {args.speed:g}")
    if args.dashboard_port is not None and not 0 < args.dashboard_port < 65536:
        raise InvalidInput.one("dashboard_port", f"must be a TCP port, got {args.dashboard_port}")
    return main(args.hours, Path(args.out), out, args.speed, args.dashboard_port or 0)


def _certs(args: argparse.Namespace, out: Console) -> int:
    from services.certs import certs_command

    return certs_command(args, out)


def _sim(args: argparse.Namespace, out: Console) -> int:
    if args.device == "chargers":
        return _sim_chargers(args, out)
    import asyncio

    from sitenode.simulators.sunspec_battery import BatterySpec, SunSpecBatterySim

    async def run() -> None:
        host, port = args.listen.rsplit(":", 1)
        sim = SunSpecBatterySim(
            BatterySpec(capacity_kwh=args.capacity_kwh, max_kw=args.max_kw, soc_pct=args.soc),
            host=host,
            port=int(port),
            speed=args.speed,
            control=args.control,
        )
        bound = await sim.start()
        out.print(f"SunSpec battery simulator on {host}:{bound} (models 1, 802, {args.control} at 40000)")
        stop = asyncio.Event()
        from services.server import stop_on_signals

        stop_on_signals(stop)
        await stop.wait()
        await sim.stop()

    asyncio.run(run())
    return 0


def _sim_chargers(args: argparse.Namespace, out: Console) -> int:
    import asyncio
    from pathlib import Path

    from services.server import stop_on_signals
    from sitenode.clock import Clock, RealClock, SimulatedClock
    from sitenode.simulators.charger_fleet import read_planned_sessions, run_fleet

    ids = args.ids.split(",") if args.ids else [f"{args.prefix}{i + 1:02d}" for i in range(args.count)]
    sessions = read_planned_sessions(Path(args.sessions)) if args.sessions else None
    start = min(s.arrival for s in sessions) if sessions else None
    if args.clock_start:  # a clock shared with a node and portfolio (the demo)
        from datetime import datetime

        clock: Clock = SimulatedClock(datetime.fromisoformat(args.clock_start), args.speed, args.clock_origin)
    else:
        clock = SimulatedClock(start, args.speed) if start is not None else RealClock()

    async def run() -> None:
        stop, ready = asyncio.Event(), asyncio.Event()
        stop_on_signals(stop)
        fleet = asyncio.create_task(
            run_fleet(
                args.central_system,
                ids,
                args.password,
                max_kw=args.max_kw,
                version=args.ocpp,
                clock=clock,
                stop=stop,
                sessions=sessions,
                plug_in_all=args.plug_in,
                ev_kw=args.ev_kw,
                meter_seconds=args.meter_seconds,
                ready=ready,
            )
        )
        waiting = asyncio.create_task(ready.wait())
        await asyncio.wait([fleet, waiting], return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if ready.is_set():
            out.print(f"{len(ids)} charge points connected to {args.central_system}: {', '.join(ids)}")
        await fleet  # on SIGTERM/SIGINT it closes the sockets and returns: exit 0

    asyncio.run(run())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gridmesh", description="Run energy sites as one virtual power plant.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, helptext in (
        ("validate", "check a run bundle's inputs"),
        ("optimize", "optimize a bundle's horizon and write its outputs"),
        ("backtest", "rolling-horizon backtest with forecasts, realized on the actual series"),
        ("report", "plots and an HTML page from a bundle's outputs"),
    ):
        cmd = sub.add_parser(name, help=helptext)
        cmd.add_argument("bundle", help="run bundle directory")
        if name == "optimize":
            cmd.add_argument(
                "--engine", choices=("direct", "pyomo"), default="direct", help="model builder (both solve with HiGHS)"
            )
    node = sub.add_parser("sitenode", help="the site node service").add_subparsers(dest="action", required=True)
    serve = node.add_parser("serve", help="run a site node: its gRPC API, planning and dispatch")
    serve.add_argument("--config", required=True, help="node.yaml (see examples/nodes/)")
    serve.add_argument("--listen", help="HOST:PORT, overriding the config")
    serve.add_argument("--insecure-loopback", action="store_true", help="plaintext, allowed only on a loopback address")
    serve.add_argument("--tls-cert")
    serve.add_argument("--tls-key")
    portfolio = sub.add_parser("portfolio", help="the portfolio service").add_subparsers(dest="action", required=True)
    pserve = portfolio.add_parser("serve", help="run the portfolio: node streams, operator API, coupled solves")
    pserve.add_argument("--config", required=True, help="portfolio.yaml (see examples/portfolio.yaml)")
    pserve.add_argument("--listen", help="HOST:PORT, overriding the config")
    pserve.add_argument(
        "--insecure-loopback", action="store_true", help="plaintext, allowed only on a loopback address"
    )
    dash = sub.add_parser("dashboard", help="the operators' web dashboard, a client of the portfolio's operator API")
    dash.add_argument("--portfolio", required=True, help="the portfolio's HOST:PORT")
    dash.add_argument(
        "--listen", default="127.0.0.1:8080", help="HOST:PORT to serve the page on (default 127.0.0.1:8080)"
    )
    dash.add_argument("--ca", help="CA certificate the portfolio's certificate is checked against")
    dash.add_argument("--cert", help="the dashboard's client certificate (gridmesh certs operator)")
    dash.add_argument("--key", help="its key")
    dash.add_argument("--insecure-loopback", action="store_true", help="plaintext to a portfolio on a loopback address")
    dash.add_argument("--tls-cert", help="HTTPS certificate for the page (required beyond loopback)")
    dash.add_argument("--tls-key")
    demo = sub.add_parser("demo", help="a portfolio and three site nodes on loopback, one simulated day")
    demo.add_argument(
        "--hours", type=float, default=24.0, help="simulated hours (default 24, about 100 s of real time)"
    )
    demo.add_argument("--out", default="runs", help="where the run folder demo-<time>/ goes")
    demo.add_argument("--speed", type=float, help="simulated seconds per real second (default: a day in 100 s, 864)")
    demo.add_argument(
        "--dashboard-port", type=int, help="port of the demo's dashboard on 127.0.0.1 (default: a free one)"
    )
    from services.certs import add_certs_commands

    add_certs_commands(sub)
    sim = sub.add_parser("sim", help="device simulators").add_subparsers(dest="device", required=True)
    battery = sim.add_parser("battery", help="a SunSpec battery on Modbus TCP")
    battery.add_argument("--listen", default="127.0.0.1:5020", help="HOST:PORT")
    battery.add_argument("--capacity-kwh", type=float, default=200.0)
    battery.add_argument("--max-kw", type=float, default=100.0)
    battery.add_argument("--soc", type=float, default=50.0, help="initial SOC, percent")
    battery.add_argument(
        "--speed", type=float, default=1.0, help="simulated seconds per second (SOC moves this much faster)"
    )
    battery.add_argument(
        "--control",
        type=int,
        choices=(124, 704),
        default=124,
        help="storage control model: 124 (storage_basic) or 704 (DERCtlAC, WSet in W; + discharges)",
    )
    chargers = sim.add_parser("chargers", help="OCPP 1.6 charge points")
    chargers.add_argument("--central-system", required=True, help="ws://HOST:PORT/ocpp")
    chargers.add_argument("--ids", help="comma-separated charge point ids (else --prefix and --count)")
    chargers.add_argument("--prefix", default="cp-")
    chargers.add_argument("--count", type=int, default=1)
    chargers.add_argument("--password", required=True)
    chargers.add_argument("--ocpp", choices=("1.6", "2.0.1"), default="1.6", help="protocol version")
    chargers.add_argument("--max-kw", type=float, default=22.0)
    chargers.add_argument("--ev-kw", type=float, default=11.0)
    chargers.add_argument("--plug-in", action="store_true", help="plug an EV into each at once")
    chargers.add_argument("--meter-seconds", type=float, default=10.0)
    chargers.add_argument("--sessions", help="sessions.csv: plug EVs in and out at their arrival and departure")
    chargers.add_argument("--speed", type=float, default=1.0, help="with --sessions: simulated seconds per second")
    chargers.add_argument(
        "--clock-start", help="ISO time the simulated clock reads at --clock-origin (default: the first arrival, now)"
    )
    chargers.add_argument(
        "--clock-origin", type=float, help="wall-clock UNIX time at which the clock reads --clock-start"
    )
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace, Console], int]] = {
    "validate": _validate,
    "optimize": _optimize,
    "backtest": _backtest,
    "report": _report,
    "sitenode": _sitenode_serve,
    "sim": _sim,
    "portfolio": _portfolio_serve,
    "certs": _certs,
    "demo": _demo,
    "dashboard": _dashboard,
}


def main(argv: Sequence[str] | None = None) -> int:
    from services.lifecycle import die_with_parent

    die_with_parent()  # started by the demo (or any gridmesh parent): go when it goes, even on SIGKILL
    args = build_parser().parse_args(argv)
    # logs and pipes get a wide table rather than rich's 80-column default
    width = None if sys.stdout.isatty() else 160
    out, err = Console(width=width), Console(stderr=True, width=width)
    if args.command in SERVICES:
        level = os.environ.get("GRIDMESH_LOG_LEVEL", "INFO").upper()
        if level not in logging.getLevelNamesMapping():
            err.print(
                "[red]error[/red] GRIDMESH_LOG_LEVEL: not a log level (DEBUG, INFO, WARNING, ERROR), "
                f"got {escape(level)!r}",
                highlight=False,
            )
            return EXIT_BAD_INPUT
        log_format = os.environ.get("GRIDMESH_LOG_FORMAT", "text").lower() or "text"
        if log_format not in ("text", "json"):
            err.print(
                f"[red]error[/red] GRIDMESH_LOG_FORMAT: not a log format (text, json), got {escape(log_format)!r}",
                highlight=False,
            )
            return EXIT_BAD_INPUT
        _configure_logging(level, log_format)
    try:
        return COMMANDS[args.command](args, out)
    except InvalidInput as exc:
        for v in exc.violations:
            err.print(f"[red]error[/red] {escape(v.field)}: {escape(v.description)}", highlight=False)
        return EXIT_BAD_INPUT
    except GridmeshError as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}", highlight=False)
        return 1
    except Exception as exc:  # noqa: BLE001 - a bug: say so in one line unless debugging
        if os.environ.get("GRIDMESH_DEBUG"):
            raise
        err.print(
            f"[red]internal error[/red] {type(exc).__name__}: {escape(str(exc))} "
            "(GRIDMESH_DEBUG=1 shows the traceback)",
            highlight=False,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
