"""The schema catalog loads every published version and resolves fingerprints and latest versions.

Also guards the publishing rules: a published `.avsc` is never edited (fingerprints are pinned
here), every later version can read every earlier one, and a broken file is reported by name.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from fastavro.schema import fingerprint, to_parsing_canonical_form

from schemas import BuildEvent, SchemaCatalog, SchemaCatalogError, UnknownSchemaError, get_catalog
from schemas.catalog import AVRO_DIR, load_schema_version

# Wire fingerprints of every published version. A published version is never edited: if one of
# these changes, restore the file and publish the change as a new version. Docs and defaults are
# not part of the canonical form, so editing them does not change the fingerprint.
PUBLISHED_FINGERPRINTS = {
    "adapter_delivery.v1.avsc": "7fd166fe83f1ca19",
    "audit_event.v1.avsc": "2a6f096e07434f6c",
    "audit_event.v2.avsc": "3c09356b076428de",
    "audit_alert.v1.avsc": "2de7e9cc484f686c",
    "build_event.v1.avsc": "9fa8feac96e3c7c1",
    "build_event.v2.avsc": "fc8ce861bb506b85",
    "build_status_change.v1.avsc": "5e029ea629a1074d",
    "build_status_change.v2.avsc": "bc0a59549b096066",
    "dead_letter.v1.avsc": "588bdfb23ca51d78",
    "gate_decision.v1.avsc": "50e65276d3c3ff3d",
    "notification_request.v1.avsc": "5da54bdbfbbaa4fc",
    "notification_request.v2.avsc": "cb27dd0a2ea1d610",
    "notifier_signal.v1.avsc": "80841eb7fc4cad0a",
    "notifier_signal.v2.avsc": "924eb041bd4c9844",
    "retry_request.v1.avsc": "a23ad0f25bc8a8b6",
}

AVSC_FILES = sorted(AVRO_DIR.glob("*.avsc"))


@pytest.mark.parametrize("path", AVSC_FILES, ids=lambda p: p.name)
def test_every_avsc_file_parses_on_its_own_in_namespace_io_cipulse(path: Path) -> None:
    version = load_schema_version(path)  # fresh named-schema registry per file: self-contained
    assert version.full_name.startswith("io.cipulse.")
    assert version.raw["namespace"] == "io.cipulse"


def test_published_versions_are_never_edited() -> None:
    actual = {p.name: load_schema_version(p).fingerprint.hex() for p in AVSC_FILES}
    changed = {
        name: (pinned, actual.get(name))
        for name, pinned in PUBLISHED_FINGERPRINTS.items()
        if actual.get(name) != pinned
    }
    assert changed == {}, (
        "published schema versions changed or disappeared; restore them and publish the change "
        "as a new <record>.v<N+1>.avsc"
    )


def test_new_schema_files_get_their_fingerprint_pinned() -> None:
    unpinned = sorted({p.name for p in AVSC_FILES} - set(PUBLISHED_FINGERPRINTS))
    assert unpinned == [], f"pin the fingerprints of {unpinned} in PUBLISHED_FINGERPRINTS"


def test_fingerprints_are_unique_and_index_every_version() -> None:
    catalog = get_catalog()
    versions = catalog.all_versions()
    assert len(versions) == len(AVSC_FILES)
    assert len({v.fingerprint for v in versions}) == len(versions)
    for version in versions:
        assert catalog.by_fingerprint(version.fingerprint) is version


def test_fingerprint_is_crc64_avro_of_the_canonical_form_little_endian() -> None:
    version = get_catalog().version("io.cipulse.BuildEvent", 1)
    canonical = to_parsing_canonical_form(json.loads(version.path.read_text()))
    assert version.fingerprint == bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
    assert version.header == b"\xc3\x01" + version.fingerprint


def test_latest_version_is_the_highest_published_one() -> None:
    catalog = get_catalog()
    assert [v.version for v in catalog.versions("io.cipulse.BuildEvent")] == [1, 2]
    assert catalog.latest("io.cipulse.BuildEvent").version == 2
    assert catalog.latest("io.cipulse.DeadLetter").version == 1
    assert catalog.model_for("io.cipulse.BuildEvent") is BuildEvent


def _field_types(schema: dict[str, Any]) -> dict[str, str]:
    return {f["name"]: json.dumps(f["type"], sort_keys=True) for f in schema["fields"]}


@pytest.mark.parametrize(
    "name", get_catalog().record_names(), ids=lambda n: n.rsplit(".", 1)[-1]
)
def test_latest_version_can_read_every_older_version(name: str) -> None:
    """Backward compatibility: added fields have defaults and kept fields keep their type."""
    catalog = get_catalog()
    latest = _field_types(catalog.latest(name).raw)
    defaults = {f["name"] for f in catalog.latest(name).raw["fields"] if "default" in f}
    for older in catalog.versions(name)[:-1]:
        old = _field_types(older.raw)
        added_without_default = sorted(set(latest) - set(old) - defaults)
        assert added_without_default == [], f"v{older.version}: {added_without_default}"
        retyped = sorted(n for n in set(old) & set(latest) if old[n] != latest[n])
        assert retyped == [], f"fields retyped since v{older.version}: {retyped}"


def test_unknown_record_name_or_version_is_unknown_schema_error() -> None:
    catalog = get_catalog()
    with pytest.raises(UnknownSchemaError, match="io.cipulse.BuildEvent"):
        catalog.latest("BuildEvent")
    with pytest.raises(UnknownSchemaError, match=r"no version 9; published: \[1, 2\]"):
        catalog.version("io.cipulse.BuildEvent", 9)


def _copy_catalog(tmp_path: Path) -> Path:
    target = tmp_path / "avro"
    shutil.copytree(AVRO_DIR, target)
    return target


def test_misnamed_file_is_a_catalog_error_naming_the_file(tmp_path: Path) -> None:
    directory = _copy_catalog(tmp_path)
    (directory / "build_event.v2.avsc").rename(directory / "build_events.v2.avsc")
    with pytest.raises(SchemaCatalogError, match="build_events.v2.avsc"):
        SchemaCatalog.from_directory(directory)


def test_version_that_only_changes_docs_is_rejected_as_duplicate(tmp_path: Path) -> None:
    directory = _copy_catalog(tmp_path)
    schema = json.loads((directory / "build_event.v2.avsc").read_text())
    schema["doc"] = "reworded"
    (directory / "build_event.v3.avsc").write_text(json.dumps(schema))
    with pytest.raises(SchemaCatalogError, match="same fingerprint"):
        SchemaCatalog.from_directory(directory)


def test_deleted_old_version_is_a_catalog_error(tmp_path: Path) -> None:
    directory = _copy_catalog(tmp_path)
    (directory / "build_event.v1.avsc").unlink()
    with pytest.raises(SchemaCatalogError, match=r"versions \[1\] are missing"):
        SchemaCatalog.from_directory(directory)


def test_unparseable_file_is_a_catalog_error(tmp_path: Path) -> None:
    directory = _copy_catalog(tmp_path)
    (directory / "dead_letter.v2.avsc").write_text('{"type": "record", "name": "DeadLetter"')
    with pytest.raises(SchemaCatalogError, match="dead_letter.v2.avsc: not a valid Avro schema"):
        SchemaCatalog.from_directory(directory)


def test_schema_without_model_is_a_catalog_error(tmp_path: Path) -> None:
    directory = _copy_catalog(tmp_path)
    (directory / "orphan.v1.avsc").write_text(
        json.dumps({"type": "record", "name": "Orphan", "namespace": "io.cipulse", "fields": []})
    )
    with pytest.raises(SchemaCatalogError, match="io.cipulse.Orphan"):
        SchemaCatalog.from_directory(directory)
