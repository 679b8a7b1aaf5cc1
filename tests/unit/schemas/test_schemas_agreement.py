"""Every model mirrors the latest Avro version of its record, field by field.

The comparison walks the Avro schema and the pydantic annotations side by side: same field names
in the same order, Avro type <-> Python type, `["null", T]` <-> `T | None`, identical defaults,
enums with identical symbols, nested records recursively. The last tests prove the comparison
itself notices a field added on one side only, so a green run means something.
"""

from __future__ import annotations

import copy
import types
import typing
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import annotated_types
import pytest
from pydantic import BaseModel, Field, create_model
from pydantic.fields import FieldInfo

from schemas import BuildEvent, BuildStatusChange, get_catalog
from schemas.models import TOP_LEVEL_RECORDS

PRIMITIVES: dict[str, type] = {
    "string": str,
    "long": int,
    "int": int,
    "boolean": bool,
    "bytes": bytes,
    "double": float,
    "float": float,
}
INT_RANGES = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
NO_DEFAULT = object()


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """Strip `Annotated[...]`, returning the bare type and its metadata."""
    metadata: list[Any] = []
    while typing.get_origin(annotation) is Annotated:
        annotation, *extra = typing.get_args(annotation)
        metadata.extend(extra)
    return annotation, metadata


def _bounds(metadata: list[Any]) -> tuple[int | None, int | None]:
    lower: int | None = None
    upper: int | None = None
    for item in metadata:
        nested = item.metadata if isinstance(item, FieldInfo) else [item]
        for constraint in nested:
            if isinstance(constraint, annotated_types.Ge):
                lower = typing.cast(int, constraint.ge)
            elif isinstance(constraint, annotated_types.Le):
                upper = typing.cast(int, constraint.le)
    return lower, upper


def _is_optional(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    return origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(annotation)


class _Comparison:
    """Collects mismatches while walking one Avro record schema and one model."""

    def __init__(self) -> None:
        self.named: dict[str, dict[str, Any]] = {}
        self.mismatches: list[str] = []

    def _register(self, schema: dict[str, Any], namespace: str) -> None:
        name = schema["name"]
        full = name if "." in name else f"{schema.get('namespace', namespace)}.{name}"
        self.named[full] = schema
        self.named[full.rsplit(".", 1)[-1]] = schema

    def record(self, schema: dict[str, Any], model: type[BaseModel], where: str, ns: str) -> None:
        self._register(schema, ns)
        ns = schema.get("namespace", ns)
        if schema["name"].rsplit(".", 1)[-1] != model.__name__:
            self.mismatches.append(
                f"{where}: Avro record {schema['name']} is mirrored by model {model.__name__}"
            )
        avro_names = [f["name"] for f in schema["fields"]]
        model_names = list(model.model_fields)
        only_avro = [n for n in avro_names if n not in model_names]
        only_model = [n for n in model_names if n not in avro_names]
        if only_avro:
            self.mismatches.append(f"{where}: fields only in the Avro schema: {only_avro}")
        if only_model:
            self.mismatches.append(f"{where}: fields only in the model: {only_model}")
        if not only_avro and not only_model and avro_names != model_names:
            self.mismatches.append(
                f"{where}: field order differs: Avro {avro_names} vs model {model_names}"
            )
        for avro_field in schema["fields"]:
            name = avro_field["name"]
            if name not in model.model_fields:
                continue
            info = model.model_fields[name]
            metadata = list(info.metadata)
            self.type(avro_field["type"], info.annotation, metadata, f"{where}.{name}", ns)
            self.default(avro_field, info, f"{where}.{name}")

    def default(self, avro_field: dict[str, Any], info: FieldInfo, where: str) -> None:
        avro_default = avro_field.get("default", NO_DEFAULT)
        if avro_default is NO_DEFAULT:
            if not info.is_required():
                self.mismatches.append(f"{where}: required in Avro, has a default in the model")
            return
        if info.is_required():
            self.mismatches.append(f"{where}: Avro default {avro_default!r}, model field required")
            return
        model_default = info.get_default(call_default_factory=True)
        if model_default != avro_default or type(model_default) is not type(avro_default) and not (
            isinstance(model_default, StrEnum) and isinstance(avro_default, str)
        ):
            self.mismatches.append(
                f"{where}: default differs: Avro {avro_default!r} vs model {model_default!r}"
            )

    def type(self, avro: Any, annotation: Any, metadata: list[Any], where: str, ns: str) -> None:
        annotation, more = _unwrap(annotation)
        metadata = metadata + more
        if isinstance(avro, list):
            if len(avro) != 2 or avro[0] != "null":
                self.mismatches.append(f"{where}: only ['null', T] unions are mirrored, got {avro}")
                return
            if not _is_optional(annotation):
                self.mismatches.append(f"{where}: optional in Avro, not `T | None` in the model")
                return
            inner = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(inner) != 1:
                self.mismatches.append(f"{where}: model union {annotation} is wider than T | None")
                return
            self.type(avro[1], inner[0], metadata, where, ns)
            return
        if _is_optional(annotation):
            self.mismatches.append(f"{where}: `T | None` in the model, not optional in Avro")
            return
        if isinstance(avro, str) and avro in self.named:
            avro = self.named[avro]
        if isinstance(avro, dict):
            kind = avro["type"]
            if avro.get("logicalType") == "timestamp-millis":
                if kind != "long" or annotation is not datetime:
                    self.mismatches.append(f"{where}: timestamp-millis must be datetime")
            elif kind == "enum":
                self._register(avro, ns)
                self.enum(avro, annotation, where)
            elif kind == "map":
                if typing.get_origin(annotation) is not dict:
                    self.mismatches.append(f"{where}: Avro map, model {annotation}")
                    return
                key, value = typing.get_args(annotation)
                if key is not str:
                    self.mismatches.append(f"{where}: map keys must be str")
                self.type(avro["values"], value, [], f"{where}{{}}", ns)
            elif kind == "array":
                if typing.get_origin(annotation) is not list:
                    self.mismatches.append(f"{where}: Avro array, model {annotation}")
                    return
                (item,) = typing.get_args(annotation)
                self.type(avro["items"], item, [], f"{where}[]", ns)
            elif kind == "record":
                if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                    self.mismatches.append(f"{where}: Avro record, model {annotation}")
                    return
                self.record(avro, annotation, where, ns)
            else:
                self.type(kind, annotation, metadata, where, ns)
            return
        expected = PRIMITIVES.get(avro)
        if expected is None:
            self.mismatches.append(f"{where}: Avro type {avro!r} is not mirrored by this check")
        elif annotation is not expected:
            self.mismatches.append(
                f"{where}: Avro {avro} needs {expected.__name__}, model {annotation}"
            )
        elif avro in INT_RANGES:
            lower, upper = _bounds(metadata)
            low, high = INT_RANGES[avro]
            # The upper bound names the Avro width exactly (int vs long); a domain rule may
            # only raise the lower bound (seq >= 0).
            if lower is None or upper != high or lower < low:
                self.mismatches.append(
                    f"{where}: Avro {avro} needs bounds within [{low}, {high}] with upper bound "
                    f"{high} (use AvroInt/AvroLong), model has [{lower}, {upper}]"
                )

    def enum(self, avro: dict[str, Any], annotation: Any, where: str) -> None:
        if not (isinstance(annotation, type) and issubclass(annotation, StrEnum)):
            self.mismatches.append(f"{where}: Avro enum {avro['name']}, model {annotation}")
            return
        if annotation.__name__ != avro["name"].rsplit(".", 1)[-1]:
            self.mismatches.append(f"{where}: Avro enum {avro['name']} vs {annotation.__name__}")
        symbols = [member.value for member in annotation]
        if symbols != avro["symbols"]:
            self.mismatches.append(
                f"{where}: {annotation.__name__} symbols {symbols} != Avro {avro['symbols']}"
            )


def mismatches(schema: dict[str, Any], model: type[BaseModel]) -> list[str]:
    comparison = _Comparison()
    comparison.record(schema, model, model.__name__, schema.get("namespace", ""))
    return comparison.mismatches


@pytest.mark.parametrize("model", TOP_LEVEL_RECORDS, ids=lambda m: m.__name__)
def test_model_mirrors_latest_schema_version_field_by_field(model: type[BaseModel]) -> None:
    latest = get_catalog().latest(model.avro_name)  # type: ignore[attr-defined]
    assert mismatches(latest.raw, model) == []


def test_every_record_in_the_catalog_has_a_mirroring_model() -> None:
    catalog = get_catalog()
    assert sorted(catalog.record_names()) == sorted(m.avro_name for m in TOP_LEVEL_RECORDS)


def test_shared_enums_are_one_python_type_across_models() -> None:
    event_status = BuildEvent.model_fields["status"].annotation
    change_status = BuildStatusChange.model_fields["status"].annotation
    assert event_status is change_status


# --- the check itself must fail when the two sides drift apart ---------------------------


def _latest_build_event_schema() -> dict[str, Any]:
    return copy.deepcopy(get_catalog().latest("io.cipulse.BuildEvent").raw)


def test_check_detects_field_added_only_to_the_model() -> None:
    drifted = create_model("BuildEvent", __base__=BuildEvent, runner_pool=(str | None, None))
    found = mismatches(_latest_build_event_schema(), drifted)
    assert found == ["BuildEvent: fields only in the model: ['runner_pool']"]


def test_check_detects_field_added_only_to_the_schema() -> None:
    schema = _latest_build_event_schema()
    schema["fields"].append({"name": "runner_pool", "type": ["null", "string"], "default": None})
    assert mismatches(schema, BuildEvent) == [
        "BuildEvent: fields only in the Avro schema: ['runner_pool']"
    ]


def test_check_detects_reordered_fields() -> None:
    schema = _latest_build_event_schema()
    schema["fields"][0], schema["fields"][1] = schema["fields"][1], schema["fields"][0]
    assert any("field order differs" in m for m in mismatches(schema, BuildEvent))


@pytest.mark.parametrize(
    ("field_name", "avro_type", "default", "complaint"),
    [
        ("branch", "string", None, "not optional in Avro"),
        ("seq", ["null", "long"], None, "optional in Avro"),
        ("exit_code", ["null", "long"], None, "bounds within"),
        ("environment", {"type": "array", "items": "string"}, [], "Avro array"),
        ("duration_ms", ["null", "string"], None, "needs str"),
        ("executor_labels", {"type": "map", "values": "string"}, {"a": "b"}, "default differs"),
    ],
)
def test_check_detects_type_optionality_and_default_drift(
    field_name: str, avro_type: Any, default: Any, complaint: str
) -> None:
    schema = _latest_build_event_schema()
    for avro_field in schema["fields"]:
        if avro_field["name"] == field_name:
            avro_field["type"] = avro_type
            avro_field["default"] = default
    assert any(complaint in m and field_name in m for m in mismatches(schema, BuildEvent))


def test_check_detects_enum_symbol_drift() -> None:
    schema = _latest_build_event_schema()
    status = next(f for f in schema["fields"] if f["name"] == "status")
    status["type"]["symbols"] = [*status["type"]["symbols"], "TIMED_OUT"]
    assert any("BuildStatus symbols" in m for m in mismatches(schema, BuildEvent))


def test_check_detects_drift_inside_nested_records() -> None:
    schema = copy.deepcopy(get_catalog().latest("io.cipulse.BuildStatusChange").raw)
    nodes = next(f for f in schema["fields"] if f["name"] == "nodes")
    nodes["type"]["items"]["fields"].append({"name": "agent", "type": "string"})
    assert mismatches(schema, BuildStatusChange) == [
        "BuildStatusChange.nodes[]: fields only in the Avro schema: ['agent']"
    ]


def test_check_detects_model_default_on_required_avro_field() -> None:
    drifted = create_model(
        "BuildEvent", __base__=BuildEvent, project=(Annotated[str, Field(min_length=1)], "p")
    )
    assert any(
        "project: required in Avro" in m
        for m in mismatches(_latest_build_event_schema(), drifted)
    )
