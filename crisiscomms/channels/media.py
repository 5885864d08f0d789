"""Fetching the image a post attaches (a recall's product photo), for Mastodon and Bluesky.

A message may carry the optional parts ``image`` (an http(s) URL, usually a fact such as
``facts.recall.photo_url``) and ``alt`` (its description, approved like the text). The channel
fetches the image once per send and uploads it with its alt text; a picture that cannot be
fetched, is not an image, or is too large for the provider is a failure of the send (retryable
or not), never a post that silently goes without it.

``proxy_url`` (setting ``media_proxy_url``) fetches through ``<proxy_url>?url=<image URL>``
instead: drills point it at the emulators' media endpoint, as they point every provider at its
emulator.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

import httpx

IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


class MediaError(Exception):
    """The image could not be had; ``retryable`` when trying later may help."""

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.retryable = retryable


@dataclass(frozen=True)
class Image:
    data: bytes
    mime_type: str
    alt: str


def fetch_image(url: str, alt: str, *, timeout_s: float, max_bytes: int,
                proxy_url: str | None = None) -> Image:
    """The image at ``url`` (through ``proxy_url`` when set); MediaError otherwise."""
    target = f"{proxy_url}?url={quote(url, safe='')}" if proxy_url else url
    try:
        with httpx.Client(timeout=timeout_s, follow_redirects=True) as client, \
                client.stream("GET", target) as response:
            if response.status_code >= 500 or response.status_code == 429:
                raise MediaError(f"the image answered {response.status_code}", retryable=True)
            if response.status_code >= 300:
                raise MediaError(f"the image answered {response.status_code}",
                                 retryable=False)
            mime = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if mime not in IMAGE_TYPES:
                raise MediaError(f"the image is {mime or 'of no type'}, not one of "
                                 f"{', '.join(sorted(IMAGE_TYPES))}", retryable=False)
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise MediaError(f"the image is over {max_bytes:,} bytes", retryable=False)
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise MediaError(f"the image could not be fetched: {type(exc).__name__}",
                         retryable=True) from None
    return Image(b"".join(chunks), mime, alt)
