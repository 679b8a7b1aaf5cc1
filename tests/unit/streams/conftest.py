"""Fixtures shared by the unit tests of the Faust consumer overrides."""

from __future__ import annotations

from typing import Any

import pytest
from faust.types import TP

from streams.faust_patches import CipulseApp


@pytest.fixture
def consumer(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The worker app's consumer (no broker), every topic acked, seeks recorded in `.seeks` instead of run."""
    app = CipulseApp("consumer-test", broker="kafka://localhost:9092", autodiscover=False, store="memory://")
    instance: Any = app.consumer
    monkeypatch.setattr(app.topics, "acks_enabled_for", lambda topic: True)
    instance.seeks = []

    async def seek_in_thread(tp: TP, offset: int | None) -> bool:
        instance.seeks.append((tp, offset))
        instance._expect(tp, offset)
        return True

    monkeypatch.setattr(instance, "seek_in_thread", seek_in_thread)
    return instance
