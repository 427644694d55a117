"""The chaos soak's short form: one simulated day, every fault kind, every invariant checked,
none broken (`bench/chaos.py`; the long form is `python bench/chaos.py --days 7`)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.chaos_faults import KINDS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(420)
def test_chaos_short_form_keeps_every_invariant(tmp_path):
    out = tmp_path / "chaos.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "chaos.py"),
            "--days",
            "1",
            "--faults-per-day",
            "10",
            "--speed",
            "600",
            "--seed",
            "1",
            "--out",
            str(tmp_path / "runs"),
            "--json",
            str(out),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=400,
        cwd=ROOT,
    )
    assert out.exists(), done.stdout[-4000:] + done.stderr[-4000:]
    result = json.loads(out.read_text())
    scheduled = {f["kind"] for f in result["faults"]}
    assert scheduled == set(KINDS)
    assert result["faults_by_kind"] == {k: sum(1 for f in result["faults"] if f["kind"] == k) for k in scheduled}
    assert sum(result["faults_by_kind"].values()) >= 10
    # the plan fault really ran plans into their deadline (the node kept the portfolio's schedule)
    limited = [f for f in result["faults"] if f["kind"] == "plan_time_limit"]
    assert limited and all(f["notes"]["plans_abandoned"] > 0 for f in limited), limited
    for name, check in result["invariants"].items():
        assert check["checked"] > 0, name
    violations = {name: c["violations"][:3] for name, c in result["invariants"].items() if c["violations"]}
    assert result["violations"] == 0, json.dumps(violations, indent=1, default=str)[:4000]
    assert result["recovery"]["unrecovered"] == 0, result["recoveries"]
    assert done.returncode == 0, done.stderr[-4000:]
