"""What talking to X's API needs wherever it happens (posting in ``channels/x_social.py``,
listening in ``reactions/sources/x_client.py``): tweepy's hard-coded host rebased onto the
configured ``x_base_url`` (an emulator, a proxy), a timeout on every request, and the SDK's
DEBUG logs kept free of tokens and OAuth values."""

from __future__ import annotations

import re
from typing import Any

import requests

from crisiscomms.core.redaction import BEARER, install_redaction

X_API_HOST = "https://api.twitter.com"
"""The prefix tweepy hard-codes; :class:`RebasedSession` replaces it with ``base_url``."""

X_REDACTIONS = (
    BEARER,
    (
        re.compile(
            r"(oauth_(?:consumer_key|token|signature)(?:=\"?|%3D|['\"],\s*['\"]))[^&\s'\",)]+"
        ),
        r"\1[redacted]",
    ),
    (re.compile(r"((?:client_key|resource_owner_key)=)[^,>\s]+"), r"\1[redacted]"),
)
X_REDACTED_LOGGERS = (
    "tweepy.client",
    "requests_oauthlib.oauth1_auth",
    "oauthlib.oauth1.rfc5849",
)


def install_x_redaction() -> None:
    """Blank tokens and OAuth values in the X SDK's logs (idempotent)."""
    install_redaction(X_REDACTED_LOGGERS, X_REDACTIONS)


class RebasedSession(requests.Session):
    """A ``requests.Session`` that sends tweepy's ``https://api.twitter.com`` requests to
    ``base_url`` instead, and gives every request a timeout."""

    def __init__(self, base_url: str, timeout_s: float) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        if isinstance(method, bytes):
            method = method.decode()
        if isinstance(url, bytes):
            url = url.decode()
        if url.startswith(X_API_HOST):
            url = self.base_url + url[len(X_API_HOST):]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout_s
        return super().request(method, url, *args, **kwargs)
