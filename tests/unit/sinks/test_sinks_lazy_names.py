"""`sinks` loads its public names lazily (a PEP 562 map) and lists them again for type checkers;
both lists must name the same things from the same modules, or a name fails only at first use."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import sinks

PACKAGE_INIT = Path(sinks.__file__)


def type_checking_imports() -> dict[str, str]:
    """name -> module of every `from sinks.x import name` under `if TYPE_CHECKING:`."""
    tree = ast.parse(PACKAGE_INIT.read_text())
    names: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom) and statement.module, ast.dump(statement)
                for alias in statement.names:
                    names[alias.asname or alias.name] = statement.module
    return names


def test_the_lazy_map_and_the_type_checking_imports_name_the_same_things_from_the_same_modules() -> None:
    assert type_checking_imports() == sinks._HOMES


def test_every_exported_name_loads_and_is_defined_where_the_map_says() -> None:
    assert sinks.__all__ == sorted(sinks._HOMES)
    for name, home in sinks._HOMES.items():
        value = getattr(sinks, name)
        assert value is getattr(importlib.import_module(home), name)


def test_an_unknown_name_is_an_attribute_error_naming_the_package() -> None:
    with pytest.raises(AttributeError, match="module 'sinks' has no attribute 'NoSuchWriter'"):
        sinks.NoSuchWriter  # type: ignore[attr-defined]  # noqa: B018
