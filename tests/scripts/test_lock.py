"""The lock is what gets installed: every make target and the image install from it, pyproject's
ranges admit every locked version, and the image's lock is the same versions as the tested one."""

import re
import tomllib
from importlib.metadata import distribution
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "requirements"
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def pins(path: Path) -> dict[tuple[str, str], str]:
    """(name, environment marker) -> version; every pinned line carries at least one hash."""
    out: dict[tuple[str, str], str] = {}
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        match = PIN.match(line)
        if match is None:
            continue
        name, version, marker = match.groups()
        assert lines[i + 1].strip().startswith("--hash=sha256:"), f"{path.name}: {name} has no hash"
        out[(canonicalize_name(name), (marker or "").strip())] = version
    return out


def test_every_pin_has_a_hash_and_the_image_lock_is_the_tested_versions():
    tested, image = pins(REQUIREMENTS / "lock.txt"), pins(REQUIREMENTS / "image.txt")
    assert len(tested) > 50 and len(image) > 30
    for key, version in image.items():
        assert tested.get(key) == version, f"image.txt pins {key[0]}=={version}, lock.txt {tested.get(key)}"


def test_pyproject_ranges_admit_every_locked_version():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared += extra
    locked = pins(REQUIREMENTS / "lock.txt")
    for text in declared:
        req = Requirement(text)
        versions = [v for (name, _), v in locked.items() if name == canonicalize_name(req.name)]
        assert versions, f"{req.name} is declared but not locked"
        for version in versions:
            assert req.specifier.contains(version, prereleases=True), f"{req.name}=={version} outside {req.specifier}"


def test_this_environment_is_the_lock():
    """The venv the suite runs in was installed from the lock (on this interpreter's markers)."""
    import sys

    from packaging.markers import Marker

    for (name, marker), version in pins(REQUIREMENTS / "lock.txt").items():
        if marker and not Marker(marker).evaluate():
            continue
        if name in {"pip", "setuptools", "wheel"} and sys.prefix == sys.base_prefix:
            continue
        assert distribution(name).version == version, name


def test_make_targets_and_the_image_install_from_the_locks():
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes --no-deps -r $(LOCK)" in makefile
    assert re.search(r"^test-latest:", makefile, re.M) and re.search(r"^lock:", makefile, re.M)
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes --no-deps --only-binary :all: -r requirements/image.txt" in dockerfile
    assert "pip install --no-deps /wheels/gridmesh-" in dockerfile
