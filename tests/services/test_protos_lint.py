"""`buf lint` passes on protos/ (buf from the npm registry, installed by `make test`)."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / ".tools" / "node_modules" / ".bin" / "buf"


def test_buf_lint_is_clean():
    assert BUF.exists(), "run `make test` (it installs buf from the npm registry)"
    done = subprocess.run([str(BUF), "lint"], cwd=ROOT / "protos", capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
