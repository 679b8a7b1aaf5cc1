"""Errors of the notification path; all derive from `streams.exceptions.StreamsError`."""

from __future__ import annotations

from streams.exceptions import StreamsError


class NotificationConfigError(StreamsError):
    """The subscription file is missing, unparseable or invalid.

    Raised once, at start, before any notification is processed. The message names the file,
    the subscription id (or its position when it has none) and the field to fix, one line per
    problem, so an operator fixes every mistake in one pass.
    """
