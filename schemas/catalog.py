"""The schema catalog: every published `.avsc` version, indexed for the serde.

Producers always write the latest version of a record; consumers may meet any version ever
published (old data in a topic, producers not yet upgraded). So the catalog keeps every version,
indexes writer schemas by the CRC-64-AVRO fingerprint that single-object encoding puts in front
of each payload, and knows the latest version (the reader schema) and the model class per record.

Files are named `<snake_record_name>.v<N>.avsc` and are self-contained. A published file is
never edited: publish `v<N+1>` instead. Loading checks this layout and fails loudly with
`SchemaCatalogError`, because a broken catalog means a broken package, not bad input.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from fastavro.schema import SchemaParseException, fingerprint, parse_schema
from fastavro.schema import to_parsing_canonical_form
from fastavro.types import Schema

from schemas.exceptions import SchemaCatalogError, UnknownSchemaError
from schemas.models import TOP_LEVEL_RECORDS, TopLevelRecord

AVRO_DIR = Path(__file__).parent / "avro"
"""Where the package's `.avsc` files live (shipped as package data)."""

SINGLE_OBJECT_MARKER = b"\xc3\x01"
"""Avro single-object encoding marker that precedes the 8-byte fingerprint."""

_FILE_NAME = re.compile(r"^(?P<stem>[a-z][a-z0-9_]*)\.v(?P<version>[1-9][0-9]*)\.avsc$")


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    """One published version of one record.

    `fingerprint` is the 8-byte little-endian CRC-64-AVRO of the Parsing Canonical Form, exactly
    as it appears on the wire after the marker; `header` is marker plus fingerprint. `raw` is
    the file's JSON as written (shared: copy it before changing it); `parsed` is fastavro's form.
    """

    full_name: str
    version: int
    path: Path
    raw: dict[str, Any] = field(repr=False)
    parsed: Schema = field(repr=False)
    canonical_form: str = field(repr=False)
    fingerprint: bytes

    @property
    def header(self) -> bytes:
        """The 10 bytes every single-object payload of this version starts with."""
        return SINGLE_OBJECT_MARKER + self.fingerprint


def snake_case(record_name: str) -> str:
    """`BuildStatusChange` -> `build_status_change`: the file stem for a record name."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", record_name).lower()


def load_schema_version(path: Path) -> SchemaVersion:
    """Read, parse and fingerprint one `.avsc` file, checking its name against its content."""
    match = _FILE_NAME.match(path.name)
    if match is None:
        raise SchemaCatalogError(
            f"{path}: schema files must be named '<snake_record_name>.v<N>.avsc' "
            "(e.g. build_event.v2.avsc); rename the file"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        parsed = parse_schema(copy.deepcopy(raw))
        canonical_form = to_parsing_canonical_form(raw)
    except (OSError, ValueError, TypeError, KeyError, SchemaParseException) as exc:
        raise SchemaCatalogError(f"{path}: not a valid Avro schema ({exc}); fix the file") from exc
    if not isinstance(raw, dict) or raw.get("type") != "record":
        raise SchemaCatalogError(f"{path}: the top-level schema must be a record")
    name = str(raw.get("name", ""))
    full_name = name if "." in name else f"{raw.get('namespace', '')}.{name}"
    if snake_case(full_name.rsplit(".", 1)[-1]) != match["stem"]:
        raise SchemaCatalogError(
            f"{path}: holds record {full_name}, but the file name says "
            f"'{match['stem']}'; name the file "
            f"{snake_case(full_name.rsplit('.', 1)[-1])}.v{match['version']}.avsc"
        )
    return SchemaVersion(
        full_name=full_name,
        version=int(match["version"]),
        path=path,
        raw=raw,
        parsed=parsed,
        canonical_form=canonical_form,
        fingerprint=bytes.fromhex(fingerprint(canonical_form, "CRC-64-AVRO")),
    )


class SchemaCatalog:
    """All schema versions of a directory, with the model class of each record.

    Built once per process (see `get_catalog`); lookups are plain dict reads so the serde can
    call them per message.
    """

    def __init__(
        self,
        versions: Iterable[SchemaVersion],
        models: Iterable[type[TopLevelRecord]] = TOP_LEVEL_RECORDS,
    ) -> None:
        self._by_fingerprint: dict[bytes, SchemaVersion] = {}
        self._by_name: dict[str, dict[int, SchemaVersion]] = {}
        for version in versions:
            clash = self._by_fingerprint.get(version.fingerprint)
            if clash is not None:
                raise SchemaCatalogError(
                    f"{version.path} and {clash.path} have the same fingerprint "
                    f"{version.fingerprint.hex()}: they encode identically (docs and defaults "
                    "are not part of the canonical form); drop the redundant version"
                )
            by_version = self._by_name.setdefault(version.full_name, {})
            if version.version in by_version:
                raise SchemaCatalogError(
                    f"{version.full_name} v{version.version} is defined twice "
                    f"({version.path}, {by_version[version.version].path})"
                )
            self._by_fingerprint[version.fingerprint] = version
            by_version[version.version] = version
        for name, by_version in self._by_name.items():
            missing = sorted(set(range(1, max(by_version) + 1)) - set(by_version))
            if missing:
                raise SchemaCatalogError(
                    f"{name}: versions {missing} are missing; published versions are never "
                    "deleted, restore them from git history"
                )
        self._models: dict[str, type[TopLevelRecord]] = {}
        for model in models:
            if model.avro_name not in self._by_name:
                raise SchemaCatalogError(
                    f"model {model.__name__} declares avro_name {model.avro_name!r} but no "
                    f"'{snake_case(model.__name__)}.v1.avsc' defines it; add the schema file"
                )
            self._models[model.avro_name] = model
        unmodelled = sorted(set(self._by_name) - set(self._models))
        if unmodelled:
            raise SchemaCatalogError(
                f"records {unmodelled} have schemas but no model; add a TopLevelRecord "
                "subclass to schemas/models and list it in TOP_LEVEL_RECORDS"
            )

    @classmethod
    def from_directory(
        cls,
        directory: Path = AVRO_DIR,
        models: Iterable[type[TopLevelRecord]] = TOP_LEVEL_RECORDS,
    ) -> SchemaCatalog:
        """Load every `*.avsc` file of `directory`."""
        paths = sorted(directory.glob("*.avsc"))
        if not paths:
            raise SchemaCatalogError(f"no .avsc files in {directory}; the package is incomplete")
        return cls((load_schema_version(path) for path in paths), models)

    def by_fingerprint(self, fingerprint_le: bytes) -> SchemaVersion | None:
        """The writer schema a payload's fingerprint names, or None if no version has it."""
        return self._by_fingerprint.get(fingerprint_le)

    def latest(self, full_name: str) -> SchemaVersion:
        """The newest version of a record: what producers write and consumers read into."""
        by_version = self._versions_of(full_name)
        return by_version[max(by_version)]

    def version(self, full_name: str, version: int) -> SchemaVersion:
        """One specific published version (for tests and replay tools)."""
        by_version = self._versions_of(full_name)
        if version not in by_version:
            raise UnknownSchemaError(
                f"{full_name} has no version {version}; published: {sorted(by_version)}"
            )
        return by_version[version]

    def versions(self, full_name: str) -> tuple[SchemaVersion, ...]:
        """Every published version of a record, oldest first."""
        by_version = self._versions_of(full_name)
        return tuple(by_version[v] for v in sorted(by_version))

    def record_names(self) -> tuple[str, ...]:
        """Full names of every record in the catalog, sorted."""
        return tuple(sorted(self._by_name))

    def all_versions(self) -> tuple[SchemaVersion, ...]:
        """Every schema version of every record."""
        return tuple(v for name in self.record_names() for v in self.versions(name))

    def model_for(self, full_name: str) -> type[TopLevelRecord]:
        """The pydantic model that mirrors the record's latest version."""
        try:
            return self._models[full_name]
        except KeyError:
            raise UnknownSchemaError(
                f"no model for record {full_name!r}; known: {sorted(self._models)}"
            ) from None

    @property
    def models(self) -> Mapping[str, type[TopLevelRecord]]:
        """Record full name -> model class."""
        return dict(self._models)

    def _versions_of(self, full_name: str) -> dict[int, SchemaVersion]:
        try:
            return self._by_name[full_name]
        except KeyError:
            raise UnknownSchemaError(
                f"no schema for record {full_name!r}; known: {self.record_names()}. "
                "Use the Avro full name, e.g. 'io.cipulse.BuildEvent'"
            ) from None


@cache
def get_catalog() -> SchemaCatalog:
    """The process-wide catalog of the package's schemas, loaded on first use."""
    return SchemaCatalog.from_directory()
