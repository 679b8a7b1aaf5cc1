"""Reading a POST body under a size limit, shared by the ingest API and the CI adapter intake."""

from __future__ import annotations

from typing import cast

from aiohttp import web
from faust.web import Request

from streams.exceptions import IngestRefused

CHUNK_BYTES = 64 * 1024


async def read_limited_body(faust_request: Request, limit: int) -> bytes:
    """The body, refused with 413 once it passes `limit` (read in chunks, not trusting Content-Length alone).

    Read from the stream, not with `request.read()`, whose aiohttp limit (1 MiB) would answer
    with its own text 413 before ours.
    """
    request = cast(web.Request, faust_request)
    declared = request.content_length
    too_large = f"at most {limit} bytes per request (CIPULSE_INGEST_MAX_BODY_BYTES): send fewer events per request"
    if declared is not None and declared > limit:
        raise IngestRefused(413, f"the body is {declared} bytes; {too_large}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            raise IngestRefused(413, f"the body is more than {limit} bytes; {too_large}")
        chunks.append(chunk)
    return b"".join(chunks)
