"""The committed stubs are exactly what `make proto` generates from protos/."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STUBS = ROOT / "services" / "stubs"


def test_stubs_match_protos(tmp_path):
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    module.generate(tmp_path)
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.py*") if "__pycache__" not in p.parts)
    committed = sorted(p.relative_to(STUBS) for p in STUBS.rglob("*.py*") if "__pycache__" not in p.parts)
    assert generated == committed
    stale = [str(p) for p in generated if (tmp_path / p).read_text() != (STUBS / p).read_text()]
    assert not stale, f"stubs drifted from protos/: run `make proto` ({stale})"


def test_stubs_import_from_the_installed_package():
    from services.stubs.gridmesh.v1 import sitenode_pb2

    assert "SiteNode" in sitenode_pb2.DESCRIPTOR.services_by_name
