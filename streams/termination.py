"""What a runner's termination facts mean for a build's final status: one explicit table.

Devtron reported a workflow whose pod died with its node as "Succeeded". Here a termination
fact (reason such as OOMKilled, Evicted, NodeLost; a non-zero or signal exit code) always maps
to FAILED or CANCELED, never SUCCEEDED, and a "succeeded" report that contradicts one is
corrected. The reason is kept in words a person understands.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from schemas import BuildStatus

S = BuildStatus

TERMINATION_TABLE: Mapping[str, tuple[BuildStatus, str]] = {
    "oomkilled": (S.FAILED, "killed for running out of memory (OOMKilled)"),
    "evicted": (S.FAILED, "evicted from its node (node pressure)"),
    "nodelost": (S.FAILED, "its node was lost"),
    "nodeshutdown": (S.FAILED, "its node shut down"),
    "nodeterminated": (S.FAILED, "its node was terminated"),
    "preempted": (S.FAILED, "preempted by a higher-priority workload"),
    "poddeleted": (S.FAILED, "its pod was deleted before it finished"),
    "deadlineexceeded": (S.FAILED, "ran past its deadline"),
    "timeout": (S.FAILED, "ran past its deadline"),
    "error": (S.FAILED, "terminated with an error"),
    "containercannotrun": (S.FAILED, "its container could not start"),
    "usercanceled": (S.CANCELED, "canceled by a user"),
    "usercancelled": (S.CANCELED, "canceled by a user"),
    "canceled": (S.CANCELED, "canceled"),
    "cancelled": (S.CANCELED, "canceled"),
}
"""Termination reason (case, spaces, '_' and '-' ignored) -> final status and meaning."""

CLEAN_REASONS = frozenset({"completed", "succeeded", "success"})

SIGNALS = {9: "SIGKILL", 15: "SIGTERM", 6: "SIGABRT", 11: "SIGSEGV", 2: "SIGINT"}


@dataclass(frozen=True)
class TerminationVerdict:
    status: BuildStatus
    reason: str | None
    corrected: bool
    """True when the reported status was overruled by the termination facts."""


def _normalise(reason: str) -> str:
    return "".join(ch for ch in reason.lower() if ch.isalnum())


def termination_status(reason: str | None, exit_code: int | None) -> tuple[BuildStatus, str] | None:
    """The final status the facts demand, or None when they say nothing against success."""
    if reason is not None and reason.strip():
        key = _normalise(reason)
        if key in TERMINATION_TABLE:
            return TERMINATION_TABLE[key]
        if key not in CLEAN_REASONS:
            return S.FAILED, f"terminated: {reason.strip()} (not a clean completion)"
    if exit_code is not None and exit_code != 0:
        signal = exit_code - 128 if exit_code > 128 else None
        if signal in SIGNALS:
            return S.FAILED, f"killed by {SIGNALS[signal]} (exit code {exit_code})"
        return S.FAILED, f"exited with code {exit_code}"
    return None


def judge(reported: BuildStatus, reason: str | None, exit_code: int | None) -> TerminationVerdict:
    """The status to record for a node that reports `reported` with these termination facts.

    Only a SUCCEEDED report is ever overruled; FAILED/CANCELED reports keep their status and
    gain the reason when they lack one.
    """
    demanded = termination_status(reason, exit_code)
    if demanded is None:
        return TerminationVerdict(reported, None, corrected=False)
    status, meaning = demanded
    if reported is S.SUCCEEDED:
        return TerminationVerdict(status, f"reported SUCCEEDED but {meaning}", corrected=True)
    return TerminationVerdict(reported, meaning, corrected=False)
