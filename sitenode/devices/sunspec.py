"""SunSpec models as register maps, taken from pysunspec2's JSON definitions (never hand-typed).

Pure: offsets, encoding and decoding of points, and scale factors. A model occupies
`2 + L` registers: its ID, its length L, then its points in order, then its groups'
points in order (depth first, as pysunspec2 lays them out). A group point is named
`Group.Point` (704's `PFWInj.PF`); a group repeated a fixed n times `Group[i].Point`.
Groups whose count is another point's value (variable length) are refused: none of
the models used here (1, 124, 704, 802) has one. Where the JSON states the standard
length (704's `L`), the layout must add up to it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

SUNS = (0x5375, 0x6E53)  # "SunS"
END_ID = 0xFFFF
UNIMPLEMENTED = {
    "uint16": 0xFFFF,
    "enum16": 0xFFFF,
    "bitfield16": 0xFFFF,
    "int16": 0x8000,
    "sunssf": 0x8000,
    "uint32": 0xFFFFFFFF,
    "enum32": 0xFFFFFFFF,
    "bitfield32": 0xFFFFFFFF,
    "int32": 0x80000000,
}
_WIDTH = {
    "uint32": 2,
    "int32": 2,
    "bitfield32": 2,
    "acc32": 2,
    "enum32": 2,
    "float32": 2,
    "uint64": 4,
    "int64": 4,
    "acc64": 4,
}


@dataclass(frozen=True)
class Point:
    name: str
    type: str
    size: int  # registers
    offset: int  # from the model's ID register
    sf: str | None = None
    access: str = "R"


@dataclass(frozen=True)
class ModelDef:
    id: int
    name: str
    length: int  # L: registers after ID and L
    points: dict[str, Point]

    def point(self, name: str) -> Point:
        return self.points[name]


def _layout(group: dict, prefix: str, offset: int, points: dict[str, Point]) -> int:
    """Map `group`'s points and then its sub-groups' from `offset`; return the offset after them."""
    for p in group.get("points", []):
        size = int(p.get("size") or _WIDTH.get(p["type"], 1))
        name = prefix + p["name"]
        sf = p.get("sf")
        points[name] = Point(name, p["type"], size, offset, sf, p.get("access", "R"))
        offset += size
    for sub in group.get("groups", []):
        count = sub.get("count", 1)
        if not isinstance(count, int):
            raise ValueError(
                f"group {prefix}{sub['name']}: repeat count {count!r} depends on the device; not supported"
            )
        for i in range(count):
            name = sub["name"] if count == 1 else f"{sub['name']}[{i}]"
            offset = _layout(sub, f"{prefix}{name}.", offset, points)
    return offset


@cache
def load_model(model_id: int) -> ModelDef:
    text = resources.files("sunspec2.models.json").joinpath(f"model_{model_id}.json").read_text()
    group = json.loads(text)["group"]
    points: dict[str, Point] = {}
    length = _layout(group, "", 0, points) - 2
    stated = next((p.get("value") for p in group["points"] if p["name"] == "L"), None)
    if isinstance(stated, int) and stated != length:
        raise ValueError(f"model {model_id}: points add up to L={length}, the definition says {stated}")
    return ModelDef(model_id, group["name"], length, points)


def decode(point: Point, regs: list[int]) -> int | str | None:
    """Raw value of a point from its registers; None where the device leaves it unimplemented."""
    if point.type == "string":
        raw = b"".join(r.to_bytes(2, "big") for r in regs)
        return raw.split(b"\0", 1)[0].decode("ascii", "replace")
    value = 0
    for r in regs:
        value = (value << 16) | (r & 0xFFFF)
    if UNIMPLEMENTED.get(point.type) == value:
        return None
    if point.type in ("int16", "sunssf") and value >= 0x8000:
        value -= 0x10000
    elif point.type == "int32" and value >= 0x80000000:
        value -= 0x100000000
    return value


def encode(point: Point, value: int | str) -> list[int]:
    if point.type == "string":
        raw = str(value).encode("ascii")[: point.size * 2].ljust(point.size * 2, b"\0")
        return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    number = int(value)
    if number < 0:
        number += 1 << (16 * point.size)
    return [(number >> (16 * (point.size - 1 - i))) & 0xFFFF for i in range(point.size)]


def scale(raw: int | None, sf: int | None) -> float | None:
    if raw is None:
        return None
    return float(raw) * (10.0 ** (sf or 0))


def unscale(value: float, sf: int | None) -> int:
    return int(round(value / (10.0 ** (sf or 0))))


def model_registers(model: ModelDef, values: dict[str, int | str]) -> list[int]:
    """ID, L and every point of `model`: given values encoded, the rest unimplemented."""
    regs: list[int] = []
    for p in model.points.values():
        if p.name == "ID":
            regs.append(model.id)
        elif p.name == "L":
            regs.append(model.length)
        elif p.name in values:
            regs += encode(p, values[p.name])
        elif p.type in UNIMPLEMENTED:
            regs += encode(p, UNIMPLEMENTED[p.type])
        else:
            regs += [0] * p.size
    return regs


def device_image(models: list[tuple[ModelDef, dict[str, int | str]]]) -> list[int]:
    """A whole SunSpec map from its base: the `SunS` marker, the models, the end model."""
    regs = list(SUNS)
    for model, values in models:
        regs += model_registers(model, values)
    return regs + [END_ID, 0]
