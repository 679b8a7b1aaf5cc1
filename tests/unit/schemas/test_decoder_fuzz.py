"""Fuzzing `schemas.serde.decode` over every published record type and schema version.

Every stream agent turns Kafka bytes into models with `decode` and dead-letters a record with
one `except SerdeError`. That only holds if `decode` never lets anything else escape, and never
hangs, whatever the bytes: random bytes, truncations and bit flips of valid encodings, wrong or
unknown fingerprints, huge strings, wide trees, out-of-range enum or union indices, and
timestamps no datetime can hold. The tests build Avro bytes with a small encoder of their own
(below), so they can write what fastavro's writer refuses to write.

Each test counts the inputs it tried; the module's total is written to the terminal and to
`test-artifacts/decoder-fuzz-inputs.json` at the end of the run.
"""

from __future__ import annotations

import json
import struct
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import (
    SchemaVersion,
    SchemaViolationError,
    TopLevelRecord,
    UndecodableError,
    decode,
    encode,
    get_catalog,
)
from schemas.catalog import SINGLE_OBJECT_MARKER
from schemas.serde import HEADER_LENGTH

CATALOG = get_catalog()
VERSIONS: list[SchemaVersion] = sorted(CATALOG.all_versions(), key=lambda v: (v.full_name, v.version))
VERSION_IDS = [f"{v.full_name.rsplit('.', 1)[-1]}.v{v.version}" for v in VERSIONS]
KNOWN_FINGERPRINTS = {v.fingerprint for v in VERSIONS}
ARTIFACT = Path(__file__).resolve().parents[3] / "test-artifacts" / "decoder-fuzz-inputs.json"

INPUTS: Counter[str] = Counter()
"""Inputs handed to `decode`, per test (the session total is reported at the end)."""

FUZZ = settings(
    max_examples=200,
    deadline=timedelta(seconds=5),  # a hang or a pathological slowdown fails the example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


@pytest.fixture(scope="module", autouse=True)
def report_input_count(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    total = sum(INPUTS.values())
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text(json.dumps({"total": total, "per_test": dict(sorted(INPUTS.items()))}, indent=2) + "\n")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"decoder fuzz: {total} inputs tried ({ARTIFACT.name})")


def check_decode(data: bytes, counter: str, expected: type[TopLevelRecord] | None = None) -> TopLevelRecord | None:
    """Decode; only a model of the payload's own record or the two documented errors may come out.

    A model that comes out must survive its own round trip (what an agent forwards is readable).
    """
    INPUTS[counter] += 1
    try:
        record = decode(data) if expected is None else decode(data, expected)
    except (UndecodableError, SchemaViolationError) as exc:
        assert str(exc), "a dead letter's reason must not be empty"
        return None
    assert isinstance(record, TopLevelRecord)
    assert data[2:HEADER_LENGTH] in KNOWN_FINGERPRINTS
    writer = CATALOG.by_fingerprint(data[2:HEADER_LENGTH])
    assert writer is not None and type(record) is CATALOG.model_for(writer.full_name)
    assert_round_trips(record)
    return record


def assert_round_trips(record: TopLevelRecord) -> None:
    """Re-encoding a decoded model gives bytes that decode to the same bytes again (compared as
    bytes: a NaN double is a legal value that is not equal to itself)."""
    again = encode(record)
    assert encode(decode(again)) == again


# --- a small Avro binary writer that can also write what the spec forbids --------------------


def zigzag(value: int) -> bytes:
    """Avro's zig-zag varint for any Python int (values past 64 bits make over-long varints)."""
    encoded = value * 2 if value >= 0 else -value * 2 - 1
    out = bytearray()
    while True:
        byte = encoded & 0x7F
        encoded >>= 7
        if encoded:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def named_types(schema: Any, into: dict[str, Any]) -> dict[str, Any]:
    """Every named type (record, enum, fixed) of a parsed schema by full name."""
    if isinstance(schema, dict):
        if schema.get("type") in ("record", "enum", "fixed") and "name" in schema:
            into[schema["name"]] = schema
        for value in schema.values():
            named_types(value, into)
    elif isinstance(schema, list):
        for value in schema:
            named_types(value, into)
    return into


def schema_of(version: SchemaVersion) -> Any:
    """fastavro's parsed schema as plain JSON data."""
    return version.parsed


NAMED = {v.fingerprint: named_types(schema_of(v), {}) for v in VERSIONS}

MUTATIONS = ("enum_index", "union_index", "timestamp", "int_range", "utf8", "length", "block_count")


class AvroFuzzWriter:
    """Draws a value for a schema and writes its Avro bytes; with `mutation`, breaks one kind of
    node (chosen per node with probability 1/`rate`), e.g. an enum index past the symbols."""

    def __init__(self, draw: st.DrawFn, named: dict[str, Any], mutation: str | None, rate: int = 4) -> None:
        self.draw = draw
        self.named = named
        self.mutation = mutation
        self.rate = rate
        self.mutated = 0

    def _mutate(self, kind: str) -> bool:
        if self.mutation != kind or self.draw(st.integers(0, self.rate - 1)) != 0:
            return False
        self.mutated += 1
        return True

    def write(self, schema: Any, depth: int = 0) -> bytes:
        if isinstance(schema, str):
            if schema in self.named:
                return self.write(self.named[schema], depth)
            schema = {"type": schema}
        if isinstance(schema, list):
            return self._union(schema, depth)
        kind = schema["type"]
        if isinstance(kind, (dict, list)) or (isinstance(kind, str) and kind in self.named):
            return self.write(kind, depth)
        writer = getattr(self, f"_{kind}")
        result: bytes = writer(schema, depth)
        return result

    def _null(self, schema: Any, depth: int) -> bytes:
        return b""

    def _boolean(self, schema: Any, depth: int) -> bytes:
        return bytes([self.draw(st.integers(0, 255) if self._mutate("int_range") else st.integers(0, 1))])

    def _int(self, schema: Any, depth: int) -> bytes:
        if self._mutate("int_range"):
            return zigzag(self.draw(st.one_of(st.integers(2**31, 2**80), st.integers(-(2**80), -(2**31) - 1))))
        return zigzag(self.draw(st.integers(-(2**31), 2**31 - 1)))

    def _long(self, schema: Any, depth: int) -> bytes:
        if schema.get("logicalType") == "timestamp-millis":
            if self._mutate("timestamp"):  # outside datetime's years 1-9999, up to the long's ends
                return zigzag(self.draw(st.one_of(
                    st.integers(253_402_300_800_000, 2**63 - 1), st.integers(-(2**63), -62_135_596_800_001),
                    st.sampled_from([2**63 - 1, -(2**63)]),
                )))
            return zigzag(self.draw(st.integers(-62_135_596_800_000, 253_402_300_799_999)))
        if self._mutate("int_range"):
            return zigzag(self.draw(st.one_of(st.integers(2**63, 2**90), st.integers(-(2**90), -(2**63) - 1))))
        return zigzag(self.draw(st.integers(-(2**63), 2**63 - 1)))

    def _float(self, schema: Any, depth: int) -> bytes:
        return struct.pack("<f", self.draw(st.floats(width=32)))

    def _double(self, schema: Any, depth: int) -> bytes:
        return struct.pack("<d", self.draw(st.floats()))

    def _bytes(self, schema: Any, depth: int) -> bytes:
        if self._mutate("length"):
            return zigzag(self.draw(st.one_of(st.integers(-(2**63), -1), st.integers(1000, 2**62))))
        value = self.draw(st.binary(max_size=40))
        return zigzag(len(value)) + value

    def _string(self, schema: Any, depth: int) -> bytes:
        if self._mutate("utf8"):
            value = self.draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"ok\x80", b"\xf4\x90\x80\x80"]))
            return zigzag(len(value)) + value
        if self._mutate("length"):
            return zigzag(self.draw(st.one_of(st.integers(-(2**63), -1), st.integers(1000, 2**62))))
        value = self.draw(st.text(max_size=20)).encode("utf-8", "surrogatepass")
        return zigzag(len(value)) + value

    def _fixed(self, schema: Any, depth: int) -> bytes:
        return self.draw(st.binary(min_size=schema["size"], max_size=schema["size"]))

    def _enum(self, schema: Any, depth: int) -> bytes:
        symbols = len(schema["symbols"])
        if self._mutate("enum_index"):
            return zigzag(self.draw(st.one_of(st.integers(symbols, 2**31 - 1), st.integers(-(2**31), -1))))
        return zigzag(self.draw(st.integers(0, symbols - 1)))

    def _union(self, branches: list[Any], depth: int) -> bytes:
        if self._mutate("union_index"):
            return zigzag(self.draw(st.one_of(st.integers(len(branches), 2**31), st.integers(-(2**31), -1))))
        index = self.draw(st.integers(0, len(branches) - 1))
        return zigzag(index) + self.write(branches[index], depth + 1)

    def _items(self, write_item: Any, depth: int) -> bytes:
        if self._mutate("block_count"):  # a count with nothing behind it, or a negative one with a byte size
            count = self.draw(st.one_of(st.integers(1, 2**62), st.integers(-(2**62), -1)))
            return zigzag(count) + (zigzag(self.draw(st.integers(-(2**40), 2**40))) if count < 0 else b"")
        count = self.draw(st.integers(0, 3 if depth < 3 else 0))
        if count == 0:
            return b"\x00"
        body = b"".join(write_item() for _ in range(count))
        if self.draw(st.booleans()):  # the spec's other form: negative count, then the block's byte size
            return zigzag(-count) + zigzag(len(body)) + body + b"\x00"
        return zigzag(count) + body + b"\x00"

    def _array(self, schema: Any, depth: int) -> bytes:
        return self._items(lambda: self.write(schema["items"], depth + 1), depth)

    def _map(self, schema: Any, depth: int) -> bytes:
        return self._items(lambda: self._string({"type": "string"}, depth) + self.write(schema["values"], depth + 1), depth)

    def _record(self, schema: Any, depth: int) -> bytes:
        return b"".join(self.write(field["type"], depth + 1) for field in schema["fields"])


@st.composite
def encoded(draw: st.DrawFn, version: SchemaVersion, mutation: str | None = None) -> bytes:
    """A single-object payload of `version` (valid Avro unless `mutation` breaks some node)."""
    writer = AvroFuzzWriter(draw, NAMED[version.fingerprint], mutation)
    return version.header + writer.write(schema_of(version))


# --- the tests ---------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=400))
def test_arbitrary_bytes(data: bytes) -> None:
    check_decode(data, "arbitrary bytes")


@FUZZ
@given(st.binary(min_size=8, max_size=8), st.binary(max_size=300))
def test_marker_with_random_fingerprint_and_body(fingerprint: bytes, body: bytes) -> None:
    check_decode(SINGLE_OBJECT_MARKER + fingerprint + body, "random fingerprint + body")


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
@FUZZ
@given(data=st.data())
def test_random_body_behind_each_known_header(version: SchemaVersion, data: st.DataObject) -> None:
    check_decode(version.header + data.draw(st.binary(max_size=300)), "known header + random body")


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
@FUZZ
@given(data=st.data())
def test_well_formed_avro_of_each_version_decodes_or_breaks_only_model_rules(
    version: SchemaVersion, data: st.DataObject
) -> None:
    """Valid Avro never is `UndecodableError`: what fails is a model rule, named as such."""
    payload = data.draw(encoded(version))
    INPUTS["well-formed Avro"] += 1
    try:
        record = decode(payload)
    except SchemaViolationError as exc:
        assert str(exc).startswith(f"{version.full_name} v{version.version} decoded but breaks")
        return
    assert type(record) is CATALOG.model_for(version.full_name)
    assert_round_trips(record)


@pytest.mark.parametrize("mutation", MUTATIONS)
@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
@settings(FUZZ, max_examples=60)
@given(data=st.data())
def test_malformed_avro_of_each_version(version: SchemaVersion, mutation: str, data: st.DataObject) -> None:
    """Out-of-range enum and union indices, timestamps past year 9999 or before year 1, ints past
    their width, invalid UTF-8, lengths and block counts with no bytes behind them."""
    check_decode(data.draw(encoded(version, mutation)), f"malformed: {mutation}")


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
@FUZZ
@given(data=st.data())
def test_truncations_and_bit_flips_of_well_formed_payloads(version: SchemaVersion, data: st.DataObject) -> None:
    payload = bytearray(data.draw(encoded(version)))
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(0, len(payload) - 1))
        INPUTS["truncated"] += 1
        with pytest.raises(UndecodableError):  # every proper prefix is too short or incomplete
            decode(bytes(payload[:cut]))
        return
    for _ in range(data.draw(st.integers(1, 3))):
        bit = data.draw(st.integers(0, len(payload) * 8 - 1))
        payload[bit // 8] ^= 1 << (bit % 8)
    check_decode(bytes(payload), "bit flips")


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
@settings(FUZZ, max_examples=100)
@given(data=st.data())
def test_body_behind_a_wrong_fingerprint(version: SchemaVersion, data: st.DataObject) -> None:
    """A body framed with another record's or version's header, an unknown one, or one whose
    fingerprint lost a bit."""
    body = data.draw(encoded(version))[HEADER_LENGTH:]
    other = data.draw(st.sampled_from([v for v in VERSIONS if v is not version]))
    flipped = bytearray(version.fingerprint)
    bit = data.draw(st.integers(0, 63))
    flipped[bit // 8] ^= 1 << (bit % 8)
    header = data.draw(st.sampled_from([other.header, SINGLE_OBJECT_MARKER + bytes(flipped)]))
    if header[2:] not in KNOWN_FINGERPRINTS:
        INPUTS["wrong fingerprint"] += 1
        with pytest.raises(UndecodableError, match="unknown writer schema fingerprint"):
            decode(header + body)
        return
    check_decode(header + body, "wrong fingerprint")
    expected = CATALOG.model_for(version.full_name)
    if other.full_name != version.full_name:
        INPUTS["wrong fingerprint"] += 1
        with pytest.raises(SchemaViolationError, match=f"expected {expected.__name__}"):
            decode(header + body, expected)


def string_fields(version: SchemaVersion) -> list[str]:
    return [
        f["name"] for f in schema_of(version)["fields"]
        if f["type"] == "string" or (isinstance(f["type"], list) and "string" in f["type"])
    ]


def write_with_string(version: SchemaVersion, field: str, value: bytes, draw: Any) -> bytes:
    """A well-formed payload whose `field` holds `value` (the other fields drawn as usual)."""
    writer = AvroFuzzWriter(draw, NAMED[version.fingerprint], None)
    parts = [version.header]
    for item in schema_of(version)["fields"]:
        if item["name"] != field:
            parts.append(writer.write(item["type"], 1))
        elif isinstance(item["type"], list):
            parts.append(zigzag(item["type"].index("string")) + zigzag(len(value)) + value)
        else:
            parts.append(zigzag(len(value)) + value)
    return b"".join(parts)


@pytest.mark.parametrize("version", [v for v in VERSIONS if string_fields(v)], ids=lambda v: f"{v.full_name}.v{v.version}")
@settings(FUZZ, max_examples=15)
@given(data=st.data())
def test_huge_strings(version: SchemaVersion, data: st.DataObject) -> None:
    """Multi-megabyte strings decode (or break a model rule) in bounded time; a declared length
    far beyond the payload is a truncation, not an allocation of that size."""
    field = data.draw(st.sampled_from(string_fields(version)))
    size = data.draw(st.sampled_from([2**20, 3 * 2**20 + 7, 8 * 2**20]))
    value = data.draw(st.sampled_from(["x", "é", "\U0001f680"])).encode() * (size // 4)
    record = check_decode(write_with_string(version, field, value, data.draw), "huge strings")
    if record is not None:
        assert len(getattr(record, field).encode()) == len(value)
    lying = write_with_string(version, field, b"abc", data.draw)
    lying = lying.replace(zigzag(3) + b"abc", zigzag(2**61) + b"abc", 1)
    check_decode(lying, "huge strings")


@pytest.mark.parametrize("count", [1_000, 20_000])
def test_wide_trees_of_nodes_and_labels(count: int) -> None:
    """A change set with many nodes and a build event with many labels (the contract's trees
    are wide, not recursive) decode whole."""
    change = CATALOG.latest("io.cipulse.BuildStatusChange")
    named = NAMED[change.fingerprint]
    node_schema = next(f["type"] for f in schema_of(change)["fields"] if f["name"] == "nodes")
    items = node_schema["items"]
    node = named[items] if isinstance(items, str) else items
    assert node is not None and node["type"] == "record"
    fields = {f["name"]: f for f in schema_of(change)["fields"]}
    parts = [change.header]
    for name, item in fields.items():
        if name == "nodes":
            one = b"".join(_minimal(f["type"], named, f["name"]) for f in node["fields"])
            parts.append(zigzag(count) + one * count + b"\x00")
        else:
            parts.append(_minimal(item["type"], named, name))
    payload = b"".join(parts)
    record = check_decode(payload, "wide trees")
    if record is not None:
        assert len(record.nodes) == count  # type: ignore[attr-defined]

    event = CATALOG.latest("io.cipulse.BuildEvent")
    labels = b"".join(zigzag(len(k)) + k + b"\x02v" for k in (f"k{i}".encode() for i in range(count)))
    parts = [event.header]
    for item in schema_of(event)["fields"]:
        if item["name"] == "executor_labels":
            parts.append(zigzag(count) + labels + b"\x00")
        else:
            parts.append(_minimal(item["type"], NAMED[event.fingerprint], item["name"]))
    record = check_decode(b"".join(parts), "wide trees")
    if record is not None:
        assert len(record.executor_labels) == count  # type: ignore[attr-defined]


def _minimal(schema: Any, named: dict[str, Any], name: str) -> bytes:
    """The smallest valid value: first enum symbol, null branch, empty container, 'x' for ids."""
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    if isinstance(schema, list):
        return zigzag(0) + _minimal(schema[0], named, name)
    kind = schema if isinstance(schema, str) else schema["type"]
    if isinstance(kind, (dict, list)):
        return _minimal(kind, named, name)
    if kind == "null":
        return b""
    if kind == "string":
        return b"\x02x"
    if kind in ("int", "long", "enum"):
        return zigzag(1_700_000_000_000 if isinstance(schema, dict) and schema.get("logicalType") else 0)
    if kind in ("array", "map"):
        return b"\x00"
    if kind == "bytes":
        return b"\x00"
    if kind == "boolean":
        return b"\x00"
    if kind == "double":
        return struct.pack("<d", 0.0)
    if kind == "record":
        return b"".join(_minimal(f["type"], named, f["name"]) for f in schema["fields"])
    raise AssertionError(f"no minimal value for {schema!r}")
