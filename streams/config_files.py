"""Read a YAML or JSON configuration file into a plain document, with errors that name the file.

Subscriptions and quality gates are both files an operator writes by hand; both must fail at
start with a line that says which file and what is wrong, never with a parser traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


def read_config_document(path: Path, what: str, error: type[Exception]) -> Any:
    """The parsed document (`.json` as JSON, anything else as YAML); raises `error` saying why not.

    `what` names the file in the message ("the gates file").
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc}") from exc
    try:
        return json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not valid JSON (line {exc.lineno}): {exc.msg}") from exc
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from exc
