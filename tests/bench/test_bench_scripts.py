"""Every benchmark starts as a script (bench/sitenode.py must not shadow the package)."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.parametrize("script", ["optimizer.py", "sitenode.py", "protocols.py", "stream.py"])
def test_benchmark_script_starts(script):
    done = subprocess.run([sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--out" in done.stdout


def test_protocols_benchmark_runs_small(tmp_path):
    out = tmp_path / "p.json"
    done = subprocess.run(
        [sys.executable, str(BENCH / "protocols.py"), "--chargers", "5", "--calls", "20", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    import json

    result = json.loads(out.read_text())
    assert result["ocpp"]["charge_points"] == 5 and result["modbus"]["write_readback_p99_ms"] > 0


def test_stream_benchmark_runs_small(tmp_path):
    out = tmp_path / "s.json"
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "stream.py"),
            "--nodes",
            "5",
            "--seconds",
            "1",
            "--solves",
            "2",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    import json

    (result,) = json.loads(out.read_text())["results"]
    assert result["nodes"] == 5 and result["streams_dropped"] == 0 and result["telemetry_messages_per_s"] > 0
    assert result["bare_link"]["messages_per_s"] > 0 and result["bare_link"]["dropped"] == 0
    sink = result["grpc_sink"]
    assert sink["one_stream"]["streams"] == 1 and sink["n_streams"]["streams"] == 5
    assert sink["one_stream"]["messages_per_s"] > 0 and sink["n_streams"]["messages_per_s"] > 0
    assert all(one["cores_until_last_ack"] for one in result["schedule"]["solves"])
    solves = result["schedule"]["solves"]
    assert len(solves) == 2 and all(one["acked_nodes"] == 5 and one["status"] == "optimal" for one in solves)
