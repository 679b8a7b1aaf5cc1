"""The one place where bytes become contract models and models become bytes.

Wire format: Avro single-object encoding, i.e. `C3 01`, the writer schema's 8-byte
little-endian CRC-64-AVRO fingerprint, then the Avro binary body. Producers always write the
latest schema version of a record. Consumers look the writer schema up by fingerprint (any
version ever published) and let Avro schema resolution read it into the latest version, so old
data keeps decoding after a schema evolves. Deploy new schema versions to consumers before
producers: a fingerprint the consumer does not know is undecodable.

Every failure on untrusted input surfaces as `UndecodableError` (cannot read the bytes) or
`SchemaViolationError` (read them, but the values break the model), both `SerdeError`s, so a
caller needs exactly one `except SerdeError` to dead-letter bad records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from io import BytesIO
from typing import Any, NamedTuple, TypeVar, overload

from fastavro import schemaless_reader, schemaless_writer
from fastavro.types import Schema
from pydantic import ValidationError

from schemas.avro_writer import ValueWriter, compile_record_writer
from schemas.catalog import SINGLE_OBJECT_MARKER, SchemaVersion, get_catalog
from schemas.decode_memo import DecodeMemo
from schemas.exceptions import (
    SchemaViolationError,
    SerdeError,
    UndecodableError,
    UnknownSchemaError,
)
from schemas.models import TopLevelRecord

M = TypeVar("M", bound=TopLevelRecord)

HEADER_LENGTH = len(SINGLE_OBJECT_MARKER) + 8
"""Marker plus fingerprint: the bytes in front of every Avro body."""

_MAX_INPUT_IN_MESSAGE = 80

Payload = bytes | bytearray | memoryview
"""What `decode` accepts: Kafka clients hand over `bytes`, buffers work too."""


class DecodedRecord(NamedTuple):
    """A payload read into the latest schema version but not validated into a model."""

    full_name: str
    writer_version: int
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Writer:
    header: bytes
    schema: Schema
    compiled: ValueWriter | None  # None when the schema needs fastavro's generic writer


@dataclass(frozen=True, slots=True)
class _Reader:
    writer: SchemaVersion
    writer_schema: Schema
    reader_schema: Schema | None  # None when the writer is the latest version: no resolution
    model: type[TopLevelRecord]


_writers: dict[type[TopLevelRecord], _Writer] = {}
_readers: dict[bytes, _Reader] = {}
_memo: DecodeMemo[TopLevelRecord] | None = None


def remember_encoded(entries: int) -> DecodeMemo[TopLevelRecord]:
    """From now on `decode` answers bytes this process's `encode` wrote lately from memory.

    Worth it where a process reads back what it publishes (the worker: change sets it encodes,
    its sink and agents read); `schemas.decode_memo` says why it is exact. Replaces any memo.
    """
    global _memo
    _memo = DecodeMemo(entries)
    return _memo


def encoded_memo() -> DecodeMemo[TopLevelRecord] | None:
    """The memo `remember_encoded` set up, if any (for metrics)."""
    return _memo


def forget_encoded() -> None:
    """Back to decoding every payload (the default)."""
    global _memo
    _memo = None


def _writer_for(model_type: type[TopLevelRecord]) -> _Writer:
    writer = _writers.get(model_type)
    if writer is None:
        catalog = get_catalog()
        full_name = getattr(model_type, "avro_name", None)
        if not isinstance(full_name, str) or catalog.models.get(full_name) is not model_type:
            raise UnknownSchemaError(
                f"{model_type.__name__} is not a published record model; encode one of "
                f"{sorted(m.__name__ for m in catalog.models.values())}"
            )
        latest = catalog.latest(full_name)
        compiled = compile_record_writer(latest.parsed, model_type)
        writer = _writers[model_type] = _Writer(latest.header, latest.parsed, compiled)
    return writer


def _reader_for(fingerprint_le: bytes) -> _Reader:
    reader = _readers.get(fingerprint_le)
    if reader is None:
        catalog = get_catalog()
        writer = catalog.by_fingerprint(fingerprint_le)
        if writer is None:
            raise UndecodableError(
                f"unknown writer schema fingerprint {fingerprint_le.hex()}: no published "
                "schema version has it. The producer uses a schema this consumer does not "
                "know (deploy the newer schemas package here) or the payload is not a cipulse "
                "record"
            )
        latest = catalog.latest(writer.full_name)
        reader = _readers[fingerprint_le] = _Reader(
            writer=writer,
            writer_schema=writer.parsed,
            reader_schema=None if latest is writer else latest.parsed,
            model=catalog.model_for(writer.full_name),
        )
    return reader


def encode(record: TopLevelRecord) -> bytes:
    """Serialize a model with the latest schema of its record, single-object framed."""
    writer = _writer_for(type(record))
    payload: bytes | None = None
    if writer.compiled is not None:
        out = bytearray(writer.header)
        try:
            writer.compiled(out, record)
        except Exception:  # noqa: BLE001 - not a value the compiled writer vouches for
            pass  # fastavro writes it below, or raises the error it always raised
        else:
            payload = bytes(out)
    if payload is None:
        payload = _encode_generic(writer, record)
    memo = _memo
    if memo is not None:
        memo.remember(payload, record)
    return payload


def _encode_generic(writer: _Writer, record: TopLevelRecord) -> bytes:
    """fastavro's writer over `model_dump()`: the reference the compiled writers must match."""
    buf = BytesIO()
    buf.write(writer.header)
    try:
        schemaless_writer(buf, writer.schema, record.model_dump())
    except (TypeError, ValueError, OverflowError, AttributeError, KeyError) as exc:
        # Validated models always fit their schema, so only two things get here: models built
        # with model_construct (no validation) and strings holding lone surrogates.
        raise SerdeError(
            f"cannot encode {type(record).__name__}: {exc!r}; build it with the model "
            "constructor (model_construct skips validation) and keep strings valid UTF-8"
        ) from exc
    return buf.getvalue()


def encode_dict(
    full_name: str, fields: Mapping[str, Any], *, version: int | None = None
) -> bytes:
    """Serialize plain fields with one schema version, bypassing model validation.

    For tests and tools only: producing old versions (evolution tests, replays) and payloads
    that are valid Avro but break model rules (dead-letter tests). Services encode models.
    """
    catalog = get_catalog()
    schema = catalog.latest(full_name) if version is None else catalog.version(full_name, version)
    buf = BytesIO()
    buf.write(schema.header)
    try:
        schemaless_writer(buf, schema.parsed, dict(fields), strict_allow_default=True)
    except (TypeError, ValueError, OverflowError, AttributeError, KeyError) as exc:
        raise SerdeError(
            f"cannot encode fields as {full_name} v{schema.version}: {exc!r}; the fields must "
            f"match that schema ({schema.path.name})"
        ) from exc
    return buf.getvalue()


def fingerprint_of(model_type: type[TopLevelRecord]) -> bytes:
    """The 8 wire bytes (little-endian CRC-64-AVRO) of the schema `encode` writes for a model."""
    return _writer_for(model_type).header[len(SINGLE_OBJECT_MARKER) :]


def _read(
    data: Payload, expected: type[TopLevelRecord] | None
) -> tuple[dict[str, Any], _Reader]:
    """Unframe and Avro-decode a payload; everything short of model validation."""
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    elif not isinstance(data, bytes):  # a tombstone (None) reaches us typed as bytes
        raise UndecodableError(
            f"expected the record's bytes, got {type(data).__name__}; a None value is a "
            "tombstone, which event topics do not carry"
        )
    if len(data) < HEADER_LENGTH:
        raise UndecodableError(
            f"payload is {len(data)} bytes, shorter than the {HEADER_LENGTH}-byte Avro "
            "single-object header (C3 01 + 8-byte fingerprint); it is empty or truncated"
        )
    if data[:2] != SINGLE_OBJECT_MARKER:
        raise UndecodableError(
            f"payload starts with {data[:2].hex()}, not the Avro single-object marker c301; "
            "the producer must frame records with schemas.serde.encode"
        )
    reader = _reader_for(data[2:HEADER_LENGTH])
    if expected is not None and reader.model is not expected:
        raise SchemaViolationError(
            f"expected {expected.__name__} ({getattr(expected, 'avro_name', '?')}) but the "
            f"payload holds {reader.model.__name__} ({reader.writer.full_name} "
            f"v{reader.writer.version}); check which topic the producer writes to"
        )
    buf = BytesIO(data)
    buf.seek(HEADER_LENGTH)
    try:
        fields = schemaless_reader(buf, reader.writer_schema, reader.reader_schema)
    except Exception as exc:  # noqa: BLE001 - see below
        # fastavro's C reader signals corrupt input with whatever builtin fails first
        # (EOFError, ValueError, IndexError, OverflowError, UnicodeDecodeError, ...): on these
        # untrusted bytes, each of them means the same thing.
        raise UndecodableError(
            f"corrupt or truncated {reader.writer.full_name} v{reader.writer.version} body "
            f"({len(data) - HEADER_LENGTH} bytes after the header): {exc!r}"
        ) from exc
    if buf.tell() != len(data):
        raise UndecodableError(
            f"{len(data) - buf.tell()} trailing bytes after a complete "
            f"{reader.writer.full_name} v{reader.writer.version} body; the payload is "
            "corrupt or two records were concatenated"
        )
    if not isinstance(fields, dict):
        raise UndecodableError(
            f"{reader.writer.full_name} body decoded to {type(fields).__name__}, not a record"
        )
    return fields, reader


def decode_dict(data: Payload) -> DecodedRecord:
    """Read a payload into the latest schema version's fields without building a model.

    For tools that inspect bad records; services use `decode`.
    """
    fields, reader = _read(data, None)
    return DecodedRecord(reader.writer.full_name, reader.writer.version, fields)


@overload
def decode(data: Payload) -> TopLevelRecord: ...
@overload
def decode(data: Payload, expected: type[M]) -> M: ...
def decode(data: Payload, expected: type[TopLevelRecord] | None = None) -> TopLevelRecord:
    """Turn a single-object Avro payload into its model.

    With `expected`, a payload of another record type is a `SchemaViolationError`.
    Raises only `UndecodableError` or `SchemaViolationError` for bad input.
    """
    memo = _memo
    if memo is not None and type(data) is bytes:
        known = memo.recall(data)
        if known is not None and (expected is None or type(known) is expected):
            return known
    fields, reader = _read(data, expected)
    try:
        return reader.model.model_validate(fields)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise SchemaViolationError(
            f"{reader.writer.full_name} v{reader.writer.version} decoded but breaks the "
            f"{reader.model.__name__} rules: {_describe(errors)}; fix the producer",
            errors,
        ) from exc


def _describe(errors: Sequence[Mapping[str, object]]) -> str:
    parts = []
    for error in errors:
        loc = error.get("loc", ())
        location = ".".join(str(part) for part in loc) if isinstance(loc, tuple) else ""
        location = location or "<record>"
        shown = repr(error.get("input"))
        if len(shown) > _MAX_INPUT_IN_MESSAGE:
            shown = shown[:_MAX_INPUT_IN_MESSAGE] + "..."
        parts.append(f"{location}: {error.get('msg')} (got {shown})")
    return "; ".join(parts)
