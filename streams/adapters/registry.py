"""The CI adapters this worker serves, by name (the URL is /adapters/<name>)."""

from __future__ import annotations

from dataclasses import replace

from streams.adapters import cdevents, github, gitlab
from streams.adapters.contract import Adapter

ADAPTERS: tuple[Adapter, ...] = (
    replace(github.ADAPTER, pings=frozenset({"ping"})),
    gitlab.ADAPTER,
    cdevents.ADAPTER,
)

BY_NAME: dict[str, Adapter] = {adapter.name: adapter for adapter in ADAPTERS}
