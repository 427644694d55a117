"""Generate the Python stubs of protos/ into services/stubs/ (or --out), reproducibly.

    python scripts/gen_protos.py [--out DIR]

grpcio-tools writes `from gridmesh.v1 import common_pb2`; the stubs live inside the
`services.stubs` package, so those imports are rewritten to match. A test runs this
into a temporary folder and fails when the committed stubs differ.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTOS = ROOT / "protos"
PACKAGE = "services.stubs"


def generate(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    sources = sorted(str(p.relative_to(PROTOS)) for p in (PROTOS / "gridmesh").rglob("*.proto"))
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    written = []
    for path in sorted(out.rglob("*.py*")):
        if path.suffix not in (".py", ".pyi"):
            continue
        text = path.read_text()
        text = re.sub(r"^from gridmesh\.v1 import", f"from {PACKAGE}.gridmesh.v1 import", text, flags=re.M)
        text = re.sub(r"^import gridmesh\.v1\.", f"import {PACKAGE}.gridmesh.v1.", text, flags=re.M)
        path.write_text(text)
        written.append(path)
    for folder in (out, out / "gridmesh", out / "gridmesh" / "v1"):
        init = folder / "__init__.py"
        if not init.exists():
            init.write_text(
                '"""Generated from protos/ by scripts/gen_protos.py; do not edit."""\n' if folder == out else ""
            )
            written.append(init)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "services" / "stubs"))
    args = parser.parse_args()
    for path in generate(Path(args.out)):
        print(path.relative_to(Path(args.out).parent) if Path(args.out).parent in path.parents else path)
    sys.exit(0)


if __name__ == "__main__":
    main()
