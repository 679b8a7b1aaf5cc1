"""The decode memo: bytes this process encoded read back as the model they came from, and nothing else."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from test_schemas_roundtrip import EXAMPLES, build_status_changes

from schemas import BuildEvent, BuildStatusChange, decode, encode
from schemas.decode_memo import DecodeMemo
from schemas.exceptions import SchemaViolationError
from schemas.serde import encoded_memo, forget_encoded, remember_encoded


@pytest.fixture
def memo() -> Iterator[DecodeMemo[object]]:
    yield remember_encoded(8)
    forget_encoded()


def test_holds_the_newest_payloads_and_counts_lookups() -> None:
    memo: DecodeMemo[str] = DecodeMemo(2)
    for n in range(3):
        memo.remember(f"p{n}".encode(), f"m{n}")
    assert (memo.recall(b"p0"), memo.recall(b"p1"), memo.recall(b"p2")) == (None, "m1", "m2")
    assert (memo.hits, memo.misses, len(memo)) == (2, 1, 2)


def test_refuses_a_memo_without_room() -> None:
    with pytest.raises(ValueError, match="at least one payload"):
        DecodeMemo(0)


def test_decode_answers_what_encode_wrote_with_the_model_itself(memo: DecodeMemo[object]) -> None:
    record = EXAMPLES[0]
    payload = encode(record)
    assert decode(payload) is record
    assert decode(payload, type(record)) is record
    assert (memo.hits, memo.misses) == (2, 0)


def test_other_bytes_are_decoded_as_always(memo: DecodeMemo[object]) -> None:
    record = EXAMPLES[0]
    payload = encode(record)
    forget_encoded()
    fresh = remember_encoded(8)  # a new memo: this process did not encode the payload since
    decoded = decode(payload)
    assert decoded == record and decoded is not record
    assert (fresh.hits, fresh.misses) == (0, 1)
    encode(record)
    as_buffer = decode(bytearray(payload))  # only exact bytes are looked up
    assert as_buffer == record and as_buffer is not record


def test_a_held_payload_of_another_type_is_still_a_schema_violation(memo: DecodeMemo[object]) -> None:
    payload = encode(next(r for r in EXAMPLES if not isinstance(r, BuildEvent)))
    with pytest.raises(SchemaViolationError, match="expected BuildEvent"):
        decode(payload, BuildEvent)


def test_off_unless_a_process_turns_it_on() -> None:
    assert encoded_memo() is None
    record = EXAMPLES[0]
    assert decode(encode(record)) is not record


@given(build_status_changes())
def test_the_memo_answers_exactly_what_decoding_would(change: BuildStatusChange) -> None:
    """Why the memo is exact: a validated model decodes back equal to itself, field for field."""
    payload = encode(change)
    decoded = decode(payload, BuildStatusChange)
    assert decoded.model_dump() == change.model_dump()
    assert decoded.model_dump_json() == change.model_dump_json()
    remember_encoded(4)
    try:
        assert decode(encode(change), BuildStatusChange) is change
    finally:
        forget_encoded()
