"""Security headers for the HTML pages our apps serve (and a middleware that sets them).

:func:`security_headers` is a plain function returning a dict, so any server can use it (the
subscriptions app, the listening receivers' rating page, ``crisiscomms serve``) and a CDN can be
given the same values (``docs/status_page.md``). The policy allows nothing by default: no
script, no frame, no plug-in, forms only to ``form_action``; an inline ``<style>`` is allowed by
its hash (:func:`inline_style_hashes`), never by ``'unsafe-inline'``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_STYLE_RE = re.compile(r"<style(?:\s[^>]*)?>(.*?)</style>", re.S | re.I)


def csp_hash(text: str) -> str:
    """A CSP source for an inline block: ``'sha256-<base64>'`` of its exact text."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def inline_style_hashes(html: str) -> list[str]:
    """The CSP hash of every inline ``<style>`` block of ``html``, in order, de-duplicated."""
    return list(dict.fromkeys(csp_hash(m) for m in _STYLE_RE.findall(html)))


def content_security_policy(*, style_hashes: Iterable[str] = (),
                            script_hashes: Iterable[str] = (),
                            form_action: str = "'self'",
                            frame_ancestors: str = "'none'",
                            img_src: str = "'self' data:") -> str:
    """A deny-by-default Content-Security-Policy."""
    styles = " ".join(style_hashes) or "'none'"
    scripts = " ".join(script_hashes) or "'none'"
    return "; ".join([
        "default-src 'none'", f"style-src {styles}", f"script-src {scripts}",
        f"img-src {img_src}", f"form-action {form_action}", "base-uri 'none'",
        f"frame-ancestors {frame_ancestors}"])


def security_headers(*, style_hashes: Iterable[str] = (), script_hashes: Iterable[str] = (),
                     form_action: str = "'self'", frame_ancestors: str = "'none'",
                     hsts: bool = False) -> dict[str, str]:
    """The headers every page of ours carries: CSP (with ``frame-ancestors``), no MIME
    sniffing, no referrer (links carry tokens), no framing for old browsers, no opener, no
    powerful features. ``hsts``: add ``Strict-Transport-Security`` (only over HTTPS)."""
    headers = {
        "Content-Security-Policy": content_security_policy(
            style_hashes=style_hashes, script_hashes=script_hashes, form_action=form_action,
            frame_ancestors=frame_ancestors),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY" if frame_ancestors == "'none'" else "SAMEORIGIN",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
    }
    if hsts:
        headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    return headers


def page_headers(html: str, **options: Any) -> dict[str, str]:
    """:func:`security_headers` for one rendered HTML page (its inline styles allowed by
    hash), not to be cached (pages behind a token link)."""
    return {**security_headers(style_hashes=inline_style_hashes(html), **options),
            "Cache-Control": "no-store"}


class SecurityHeadersMiddleware:
    """Pure ASGI middleware: every HTTP response gets ``defaults`` for each header it does not
    set itself (a page sets its own CSP with its style hashes; a JSON answer or a framework
    error page gets the strict default)."""

    def __init__(self, app: ASGIApp, defaults: Mapping[str, str] | None = None) -> None:
        self.app = app
        self.defaults = dict(defaults or security_headers())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.defaults.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
