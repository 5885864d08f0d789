"""One bounded body reader for every FastAPI app (intake, listening receivers, subscriptions).

A request body is refused as early as the request allows, so a flood of big uploads costs
neither memory nor time: a declared ``Content-Length`` over the limit → :class:`BodyTooLarge`
before a byte is read (:func:`check_declared_length`); a body without one (chunked) or one that
lies is streamed and cut as soon as it passes the limit (:func:`read_capped`), holding at most
``limit`` bytes plus one chunk. A ``Content-Length`` that is not a number is
:class:`BadContentLength`. Each app turns these into its own answer (413, 400).
"""

from __future__ import annotations

from fastapi import Request

from crisiscomms.core.errors import CrisisCommsError


class BodyError(CrisisCommsError):
    """A body refused before it is parsed; ``status`` is the HTTP status to answer."""

    status = 400


class BodyTooLarge(BodyError):
    """The body is over the limit (declared or streamed)."""

    status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"the body is over {limit} bytes", field="body")
        self.limit = limit


class BadContentLength(BodyError):
    """``Content-Length`` is not a whole number."""

    status = 400

    def __init__(self) -> None:
        super().__init__("Content-Length is not a number", field="content-length")


def check_declared_length(request: Request, limit: int) -> None:
    """:class:`BodyTooLarge` when ``Content-Length`` says the body is over ``limit``;
    :class:`BadContentLength` when it is not a number. Reads nothing."""
    declared = request.headers.get("content-length")
    if declared is None:
        return
    declared = declared.strip()
    if not (declared.isascii() and declared.isdigit()):  # refuses "-1", "+5", "1e9", "²"
        raise BadContentLength
    if int(declared) > limit:
        raise BodyTooLarge(limit)


async def read_capped(request: Request, limit: int) -> bytes:
    """The body, or :class:`BodyTooLarge` as soon as it is known to exceed ``limit``: from
    ``Content-Length`` before a byte is read, else while it streams (chunked uploads)."""
    check_declared_length(request, limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)
