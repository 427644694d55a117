"""The fuzzer's shared parts: seeded byte and JSON mutators, what a target reports, RSS."""

from __future__ import annotations

import gc
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from random import Random
from typing import Any

MAX_GRPC_RECEIVE = 4 * 1024 * 1024  # grpc's default max receive message size (our servers keep it)


def rss_kb() -> int:
    """This process's resident set (VmRSS, kB), after a collection."""
    gc.collect()
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@dataclass
class Report:
    """What one target measured. `crashes`: a server that stopped answering, an exception that
    escaped where a status, a close or a device error was due. `kinds`: inputs per mutation;
    `outcomes`: what they ended with (gRPC codes, close codes, device errors)."""

    target: str
    inputs: int = 0
    seconds: float = 0.0
    crashes: int = 0
    server_up: bool = True
    other_session_alive: bool = True
    rss_warm_kb: int = 0
    rss_end_kb: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    def crash(self, what: str) -> None:
        self.crashes += 1
        if len(self.notes) < 20:
            self.notes.append(what)

    @property
    def rate(self) -> float:
        return self.inputs / self.seconds if self.seconds else 0.0

    @property
    def rss_growth_pct(self) -> float:
        return 100.0 * (self.rss_end_kb - self.rss_warm_kb) / self.rss_warm_kb if self.rss_warm_kb else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "inputs": self.inputs,
            "seconds": round(self.seconds, 2),
            "inputs_per_s": round(self.rate, 1),
            "crashes": self.crashes,
            "server_up": self.server_up,
            "other_session_alive": self.other_session_alive,
            "rss_warm_kb": self.rss_warm_kb,
            "rss_end_kb": self.rss_end_kb,
            "rss_growth_pct": round(self.rss_growth_pct, 2),
            "kinds": dict(self.kinds.most_common()),
            "outcomes": dict(self.outcomes.most_common()),
            "notes": self.notes,
        }


# -- protobuf bytes -------------------------------------------------------------------------


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def tag(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


class ByteMutator:
    """Seeded mutations of valid serializations: byte level (flip, replace, insert, delete,
    duplicate, truncate, splice), protobuf level (a known field number with the wrong wire type,
    invalid UTF-8 in a string, huge lengths, deep group nesting, deep length-delimited nesting),
    random bytes and, rarely, a message over the server's receive limit."""

    KINDS = (
        ("valid", 2),
        ("flip", 10),
        ("replace", 8),
        ("insert", 8),
        ("delete", 6),
        ("duplicate", 5),
        ("truncate", 6),
        ("splice", 5),
        ("random", 10),
        ("wrong_wire_type", 10),
        ("bad_utf8", 5),
        ("huge_length", 4),
        ("big_varint", 4),
        ("deep_groups", 2),
        ("deep_nested", 2),
        ("large", 1),
    )

    def __init__(self, rng: Random, oversized_every: int = 5000) -> None:
        self.rng = rng
        self.oversized_every = oversized_every
        self.count = 0
        self.names = [k for k, _ in self.KINDS]
        self.weights = [w for _, w in self.KINDS]

    def mutate(self, seed: bytes, others: list[bytes]) -> tuple[str, bytes]:
        self.count += 1
        r = self.rng
        if self.oversized_every and self.count % self.oversized_every == 0:
            return "oversized", r.randbytes(64) + b"\x0a" + varint(MAX_GRPC_RECEIVE + 10) + bytes(MAX_GRPC_RECEIVE + 10)
        kind = r.choices(self.names, self.weights)[0]
        data = bytearray(seed)
        n = len(data)
        if kind == "valid":
            pass
        elif kind == "flip" and n:
            for _ in range(r.randint(1, 4)):
                data[r.randrange(n)] ^= 1 << r.randrange(8)
        elif kind == "replace" and n:
            for _ in range(r.randint(1, 4)):
                data[r.randrange(n)] = r.randrange(256)
        elif kind == "insert":
            at = r.randint(0, n)
            data[at:at] = r.randbytes(r.randint(1, 16))
        elif kind == "delete" and n:
            at = r.randrange(n)
            del data[at : at + r.randint(1, 8)]
        elif kind == "duplicate" and n:
            at = r.randrange(n)
            piece = data[at : at + r.randint(1, 32)]
            data[at:at] = piece * r.randint(1, 8)
        elif kind == "truncate" and n:
            del data[r.randrange(n) :]
        elif kind == "splice":
            other = r.choice(others) if others else b""
            data = data[: r.randint(0, n)] + bytearray(other[r.randint(0, len(other)) :])
        elif kind == "random":
            data = bytearray(r.randbytes(r.choice((1, 2, 4, 8, 32, 256, 4096))))
        elif kind == "wrong_wire_type":
            number = r.randint(1, 20)
            wire = r.choice((0, 1, 2, 5, 3))
            body = {
                0: varint(r.getrandbits(64)),
                1: r.randbytes(8),
                2: varint(8) + r.randbytes(8),
                5: r.randbytes(4),
                3: tag(number, 4),
            }[wire]
            data += tag(number, wire) + body
        elif kind == "bad_utf8":
            data += tag(r.randint(1, 6), 2) + varint(4) + bytes((0xFF, 0xFE, 0xC0, r.randrange(256)))
        elif kind == "huge_length":
            data += tag(r.randint(1, 10), 2) + varint(r.choice((2**31, 2**32 + 5, 2**62, 2**64 - 1)))
        elif kind == "big_varint":
            data += tag(r.randint(1, 12), 0) + b"\xff" * r.randint(9, 12) + b"\x01"
        elif kind == "deep_groups":
            depth = r.choice((100, 1000, 20000))
            number = r.randint(1, 5)
            data += tag(number, 3) * depth + tag(number, 4) * depth
        elif kind == "deep_nested":
            inner = b""
            for _ in range(r.choice((64, 200, 2000))):
                inner = tag(1, 2) + varint(len(inner)) + inner
            data = bytearray(inner)
        elif kind == "large":
            data += tag(r.randint(1, 5), 2) + varint(200_000) + bytes(200_000)
        return kind, bytes(data)


# -- JSON (OCPP frames) ---------------------------------------------------------------------


def _random_value(r: Random) -> Any:
    return r.choice(
        (
            None,
            True,
            -1,
            0,
            2**63,
            -(2**70),
            1e308,
            -0.0,
            "",
            "x" * r.choice((1, 50, 1000)),
            "\u0000\ud7ff",
            "NaN",
            "2025-13-45T99:99:99Z",
            [],
            [1, "a", None],
            {},
            {"a": {"b": [1]}},
        )
    )


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _set(root: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    node = root
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return root


class JsonMutator:
    """OCPP-J frames mutated from valid ones: structural (a value of the wrong type, a key
    dropped or added, an unknown or wrong-case action, a wrong message type id, a wrong
    unique id, deep nesting, huge strings) and textual (the byte mutations of the JSON text:
    bad JSON, bad UTF-8 as a binary frame)."""

    KINDS = (
        ("valid", 4),
        ("wrong_type", 14),
        ("drop_key", 6),
        ("add_key", 5),
        ("unknown_action", 6),
        ("message_type", 8),
        ("unique_id", 4),
        ("result_for_nothing", 4),
        ("not_a_list", 4),
        ("frame_length", 4),
        ("deep", 2),
        ("huge_string", 2),
        ("text_bytes", 16),
        ("binary", 3),
        ("random_text", 4),
    )

    def __init__(self, rng: Random) -> None:
        self.rng = rng
        self.bytes = ByteMutator(rng, oversized_every=0)
        self.names = [k for k, _ in self.KINDS]
        self.weights = [w for _, w in self.KINDS]

    def mutate(self, seed: list, others: list[list]) -> tuple[str, str | bytes]:
        r = self.rng
        kind = r.choices(self.names, self.weights)[0]
        frame: Any = json.loads(json.dumps(seed))
        if kind == "wrong_type":
            for _ in range(r.randint(1, 3)):
                frame[-1] = _set(frame[-1], r.choice(_paths(frame[-1])), _random_value(r))
        elif kind == "drop_key":
            dicts = [p for p in _paths(frame[-1]) if isinstance(_get(frame[-1], p), dict) and _get(frame[-1], p)]
            if dicts:
                d = _get(frame[-1], r.choice(dicts))
                del d[r.choice(list(d))]
        elif kind == "add_key":
            dicts = [p for p in _paths(frame[-1]) if isinstance(_get(frame[-1], p), dict)]
            if dicts:
                _get(frame[-1], r.choice(dicts))[r.choice(("unknownKey", "", "a" * 300))] = _random_value(r)
        elif kind == "unknown_action" and len(frame) > 3:
            frame[2] = r.choice(("Reset", "heartbeat", "", "DataTransfer", "X" * 500, 7, None, "SignCertificate"))
        elif kind == "message_type":
            frame[0] = r.choice((0, 1, 4, 5, -1, 2.5, "2", None, 2**64, 3, 4))
        elif kind == "unique_id":
            frame[1] = r.choice((None, 1, "", "u" * 100_000, [], {}))
        elif kind == "result_for_nothing":
            frame = r.choice(([3, f"nobody-{r.getrandbits(32)}", {}], [4, "nobody", "InternalError", "x", {}]))
        elif kind == "not_a_list":
            frame = r.choice(({"a": 1}, "2", 2, None, [], [2], [2, "id"]))
        elif kind == "frame_length":
            frame = frame + [_random_value(r)] * r.randint(1, 3) if r.random() < 0.5 else frame[: r.randint(0, 3)]
        elif kind == "deep":
            depth = r.choice((100, 1000, 100_000))
            return kind, '[2,"d","Heartbeat",' + "[" * depth + "]" * depth + "]"
        elif kind == "huge_string":
            size = r.choice((10_000, 500_000, 2_000_000))
            if len(frame) > 3 and isinstance(frame[3], dict):
                frame[3]["vendorInfo"] = "v" * size
            else:
                frame[1] = "v" * size
        elif kind == "text_bytes":
            _, text = self.bytes.mutate(json.dumps(frame).encode(), [])
            return kind, text.decode("utf-8", "replace")
        elif kind == "binary":
            _, raw = self.bytes.mutate(json.dumps(frame).encode(), [])
            return kind, raw
        elif kind == "random_text":
            return kind, r.randbytes(r.randint(1, 200)).decode("latin-1")
        return kind, json.dumps(frame)


def _get(root: Any, path: tuple) -> Any:
    for key in path:
        root = root[key]
    return root
