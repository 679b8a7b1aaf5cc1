"""Quality gates: the gates file, loaded and validated once at start.

A gate names what it watches (a project, optionally one pipeline and one branch) and the rules a
release must meet. The file is YAML (or JSON, chosen by the `.json` suffix) with a top-level
`gates` list; see `streams/gates.example.yaml`. `load_gates` checks every entry and raises one
`GateConfigError` listing every problem as `file: gate 'id' (entry N): field X: message`, so a
typo stops the worker at start instead of silently passing a release.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from streams.config_files import read_config_document
from streams.exceptions import GateConfigError
from streams.notify_subscriptions import Duration

MAX_WINDOW_BUILDS = 1000
"""Most final builds a gate remembers; also the window of a rule that only gives `within`."""

GateId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$", max_length=128)]
"""Letters, digits and `_.:-`: it is the Kafka key, a URL path segment and a metric label."""

Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\s]+$")]


class _ConfigModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BuildWindow(_ConfigModel):
    """The builds a rule measures: the last `last_builds`, and/or those finished `within` of the newest.

    `within` is measured back from the newest final build the gate has seen (not the wall clock),
    so the same inputs always give the same decision.
    """

    last_builds: int | None = Field(default=None, ge=1, le=MAX_WINDOW_BUILDS)
    within: Duration | None = None

    @model_validator(mode="after")
    def _bounded(self) -> BuildWindow:
        if self.last_builds is None and self.within is None:
            raise ValueError("give last_builds (e.g. 20), within (e.g. '24h') or both")
        if self.within is not None and self.within <= timedelta(0):
            raise ValueError(f"within must be a positive duration, got {self.within}")
        return self


class SuccessRateRule(BuildWindow):
    """Share of SUCCEEDED builds in the window (FAILED and CANCELED count against it)."""

    at_least: float = Field(ge=0.0, le=1.0, description="0.9 means 90 %")


class DurationRule(BuildWindow):
    """The 95th percentile of the window's build durations (builds without a duration are skipped)."""

    at_most: Duration

    @field_validator("at_most")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError(f"must be a positive duration, got {value}")
        return value


class GateRules(_ConfigModel):
    min_builds: int = Field(default=1, ge=1, le=MAX_WINDOW_BUILDS)
    """Fewer final builds than this: the gate is PENDING (BK-CI: WAIT)."""
    latest_build_succeeded: bool = False
    success_rate: SuccessRateRule | None = None
    p95_duration: DurationRule | None = None
    no_open_stuck_audit: bool = False
    no_unacknowledged_failure_notification: bool = False
    """FAIL while a FAILED-build notification of the gate's scope was requested but its receiver
    has not acknowledged it (pending, in flight, or given up); see `streams.gate_state`."""

    @model_validator(mode="after")
    def _some_rule(self) -> GateRules:
        if not (
            self.latest_build_succeeded or self.success_rate or self.p95_duration or self.no_open_stuck_audit
            or self.no_unacknowledged_failure_notification
        ):
            raise ValueError(
                "no rule enabled; set at least one of latest_build_succeeded, success_rate, p95_duration, "
                "no_open_stuck_audit, no_unacknowledged_failure_notification"
            )
        return self

    @property
    def uses_builds(self) -> bool:
        return self.latest_build_succeeded or self.success_rate is not None or self.p95_duration is not None

    def windows(self) -> tuple[BuildWindow, ...]:
        return tuple(w for w in (self.success_rate, self.p95_duration) if w is not None)


class Gate(_ConfigModel):
    id: GateId
    project: Name
    pipeline: Name | None = None
    """None: every pipeline of the project."""
    branch: Name | None = None
    """None: every branch (and builds without one)."""
    description: str = ""
    rules: GateRules

    def covers_build(self, project: str, pipeline: str, branch: str | None) -> bool:
        return (
            project == self.project
            and (self.pipeline is None or pipeline == self.pipeline)
            and (self.branch is None or branch == self.branch)
        )

    def covers_audit(self, project: str, pipeline: str | None) -> bool:
        """An audit of the whole project (no pipeline) blocks every gate of that project."""
        if not self.rules.no_open_stuck_audit or project != self.project:
            return False
        return self.pipeline is None or pipeline is None or pipeline == self.pipeline

    def covers_notification(self, project: str, pipeline: str | None, branch: str | None) -> bool:
        """A notification about a build of the gate's scope (a request without a branch, v1, only
        counts for gates without one, as a build without a branch does)."""
        if not self.rules.no_unacknowledged_failure_notification or project != self.project:
            return False
        return (self.pipeline is None or pipeline == self.pipeline) and (self.branch is None or branch == self.branch)

    @property
    def kept_builds(self) -> int:
        """How many final builds the gate's state must remember to evaluate every rule."""
        windows = self.rules.windows()
        if any(w.last_builds is None for w in windows):
            return MAX_WINDOW_BUILDS
        return max([self.rules.min_builds, 1, *(w.last_builds or 1 for w in windows)])

    @property
    def kept_for(self) -> timedelta | None:
        """How far back from the newest build the state must remember (None: only `kept_builds` counts)."""
        windows = self.rules.windows()
        if not windows or any(w.within is None for w in windows):
            return None
        return max(w.within for w in windows if w.within is not None)


def parse_gates(document: object, source: str) -> list[Gate]:
    """Validate an already parsed gates document; `source` names it in errors."""
    if isinstance(document, Mapping):
        unknown = sorted(str(k) for k in document if k != "gates")
        if unknown:
            raise GateConfigError(f"{source}: unknown top-level key(s) {', '.join(unknown)}; only 'gates' is allowed")
        entries = document.get("gates")
    else:
        entries = None
    if not isinstance(entries, list):
        raise GateConfigError(f"{source}: expected a mapping with a 'gates' list at the top level")
    problems: list[str] = []
    gates: list[Gate] = []
    first_index: dict[str, int] = {}
    for index, entry in enumerate(entries):
        label = _entry_label(entry, index)
        if not isinstance(entry, Mapping):
            problems.append(f"{source}: {label}: must be a mapping, got {type(entry).__name__}")
            continue
        raw_id = entry.get("id")
        if isinstance(raw_id, str) and raw_id in first_index:
            problems.append(f"{source}: {label}: field id: duplicate id, already used by entry {first_index[raw_id] + 1}")
            continue
        if isinstance(raw_id, str):
            first_index[raw_id] = index
        try:
            gates.append(Gate.model_validate(entry))
        except ValidationError as exc:
            problems.extend(f"{source}: {label}: field {_field(e['loc'])}: {e['msg']}" for e in exc.errors())
    if problems:
        raise GateConfigError("invalid quality gates:\n" + "\n".join(problems))
    return gates


def load_gates(path: str | Path) -> list[Gate]:
    """Read and validate the gates file; called once at worker start."""
    path = Path(path)
    return parse_gates(read_config_document(path, "the gates file", GateConfigError), str(path))


def describe(gate: Gate) -> str:
    """One line for `cipulse worker --check-gates` and the start-up log."""
    scope = f"{gate.project}/{gate.pipeline or '*'}@{gate.branch or '*'}"
    rules = gate.rules
    parts = [f"min {rules.min_builds} build(s)"] if rules.uses_builds else []
    if rules.latest_build_succeeded:
        parts.append("latest build SUCCEEDED")
    for name, window, bound in (
        ("success rate", rules.success_rate, f">= {rules.success_rate.at_least:g}" if rules.success_rate else ""),
        ("p95 duration", rules.p95_duration, f"<= {span(rules.p95_duration.at_most)}" if rules.p95_duration else ""),
    ):
        if window is not None:
            over = " and ".join(
                p for p in (
                    f"last {window.last_builds} builds" if window.last_builds else "",
                    f"builds within {span(window.within)} of the newest" if window.within else "",
                ) if p
            )
            parts.append(f"{name} {bound} over {over}")
    if rules.no_open_stuck_audit:
        parts.append("no open stuck audit")
    if rules.no_unacknowledged_failure_notification:
        parts.append("no unacknowledged failure notification")
    return f"{gate.id}: {scope}: " + ", ".join(parts)


def span(value: timedelta) -> str:
    """`timedelta(minutes=90)` -> `1h30m`: durations as the gates file writes them."""
    seconds = value.total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            count = int(seconds // size)
            parts.append(f"{count}{unit}")
            seconds -= count * size
    if seconds or not parts:
        parts.append(f"{seconds:g}s")
    return "".join(parts)


def _entry_label(entry: object, index: int) -> str:
    if isinstance(entry, Mapping) and isinstance(entry.get("id"), str) and entry["id"].strip():
        return f"gate {entry['id']!r} (entry {index + 1})"
    return f"gate entry {index + 1} (no id)"


def _field(loc: Sequence[int | str]) -> str:
    return ".".join(str(p) for p in loc) or "(entry)"
