"""The chaos soak's report: process memory (RSS from /proc every few seconds, per process
and pid), recovery times p50/p99, the JSON and the table."""

from __future__ import annotations

import json
import time
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np
from rich.console import Group
from rich.table import Table

from bench.chaos_fleet import Fleet


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class RssSampler:
    def __init__(self) -> None:
        self.series: dict[str, list[tuple[float, int]]] = {}  # "name:pid" -> (unix, kB)

    def sample(self, fleet: Fleet) -> None:
        now = time.time()
        for name in fleet.children:
            pid = fleet.pid(name)
            if pid is None:
                continue
            kb = rss_kb(pid)
            if kb is not None:
                self.series.setdefault(f"{name}:{pid}", []).append((now, kb))

    def check(self, warmup_fraction: float, limit: float, min_seconds: float = 60.0) -> dict[str, Any]:
        """Per process lifetime long enough to judge: the median RSS of the first tenth after
        the warm-up against the median of the last tenth; growth above `limit` is a violation."""
        rows, violations, skipped = [], [], []
        for key, points in self.series.items():
            if len(points) < 20 or points[-1][0] - points[0][0] < min_seconds:
                skipped.append(key)
                continue
            after = points[int(len(points) * warmup_fraction) :]
            tenth = max(3, len(after) // 10)
            base = median(kb for _, kb in after[:tenth])
            last = median(kb for _, kb in after[-tenth:])
            growth = last / base - 1 if base else 0.0
            row = {"process": key, "base_mb": round(base / 1024, 1), "last_mb": round(last / 1024, 1)}
            row |= {"growth": round(growth, 4), "peak_mb": round(max(kb for _, kb in points) / 1024, 1)}
            rows.append(row)
            if growth > limit:
                violations.append({**row, "why": f"RSS grew {growth:.1%} after warm-up (limit {limit:.0%})"})
        return {"checked": len(rows), "violations": violations, "processes": rows, "too_short": skipped}


def _pct(values: list[float], q: float) -> float | None:
    return None if not values else round(float(np.percentile(values, q)), 1)


def recovery_summary(recoveries: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"count": len(recoveries), "unrecovered": sum(1 for r in recoveries if r.get("unrecovered"))}
    for key in ("stream", "resync", "mode"):
        values = [r[f"{key}_sim_s"] for r in recoveries if r.get(f"{key}_sim_s") is not None]
        real = [r[f"{key}_real_s"] for r in recoveries if r.get(f"{key}_real_s") is not None]
        out[key] = {"p50_sim_s": _pct(values, 50), "p99_sim_s": _pct(values, 99)}
        out[key] |= {"p50_real_s": _pct(real, 50), "p99_real_s": _pct(real, 99), "n": len(values)}
    return out


def write_json(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")


def render(result: dict[str, Any]) -> Group:
    faults = Table(title=f"faults injected ({result['days']:g} simulated days, seed {result['seed']})")
    faults.add_column("kind")
    faults.add_column("count", justify="right")
    for kind, n in sorted(result["faults_by_kind"].items()):
        faults.add_row(kind, str(n))
    faults.add_row("[bold]total[/bold]", str(sum(result["faults_by_kind"].values())))
    inv = Table(title="invariants (goal: 0 violations)")
    for col in ("invariant", "checked", "violations"):
        inv.add_column(col, justify="left" if col == "invariant" else "right")
    for name, c in result["invariants"].items():
        v = len(c["violations"])
        inv.add_row(name, str(c["checked"]), f"[red]{v}[/red]" if v else "0")
    rec = Table(title="recovery after a fault ends (simulated seconds; real in brackets)")
    for col in ("", "n", "p50", "p99"):
        rec.add_column(col, justify="left" if not col else "right")
    summary = result["recovery"]
    for key, label in (("stream", "stream back"), ("resync", "schedule resynced"), ("mode", "PORTFOLIO mode")):
        s = summary[key]
        rec.add_row(
            label,
            str(s["n"]),
            f"{s['p50_sim_s']} ({s['p50_real_s']})" if s["n"] else "-",
            f"{s['p99_sim_s']} ({s['p99_real_s']})" if s["n"] else "-",
        )
    rec.add_row("unrecovered", str(summary["unrecovered"]), "", "")
    parts: list[Any] = [faults, inv, rec]
    shown = 0
    for name, c in result["invariants"].items():
        for v in c["violations"][:5]:
            parts.append(f"[red]{name}[/red]: {json.dumps(v, default=str)[:400]}")
            shown += 1
    if result["violations"] > shown:
        parts.append(f"... {result['violations'] - shown} more in the JSON")
    return Group(*parts)
