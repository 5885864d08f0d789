"""Bluesky PDS emulator: the XRPC calls ``BlueskyChannel`` (the ``atproto`` SDK) makes,
answered the way a PDS answers.

- ``POST /xrpc/com.atproto.server.createSession`` ``{"identifier", "password"}`` → ``{did,
  handle, accessJwt, refreshJwt, active}`` (JWTs whose payload carries ``exp``, as the SDK
  reads it); 401 ``AuthenticationRequired`` for a wrong handle or password.
- ``POST /xrpc/com.atproto.repo.createRecord`` (``Authorization: Bearer <accessJwt>``) of an
  ``app.bsky.feed.post`` record: checks the lexicon's limits (``text`` at most 300 graphemes and
  3,000 bytes: 400 ``InvalidRequest`` naming the count), that each facet's byte range lies on
  the text and that a link facet's range holds the very URL it points at, that ``langs`` has
  at most 3 entries, and that ``reply.root``/``reply.parent`` name posts that exist with their
  cid. An ``rkey`` given by the client must be a TID and unused (400 ``InvalidRequest``
  "Record already exists" otherwise, as the repo refuses a second create at the same path).
  Answers ``{uri, cid, commit}``.
- ``POST /xrpc/com.atproto.repo.uploadBlob`` (raw bytes, at most 1,000,000) → ``{"blob"}``; a
  post's ``app.bsky.embed.images`` must name uploaded blobs, each image with its ``alt``
  (400 otherwise); the record of a post lists the alt texts.
- ``GET /xrpc/com.atproto.repo.getRecord?repo&collection&rkey`` → ``{uri, cid, value}`` or 400
  ``RecordNotFound``.
- Rate limits as the PDS sends them: ``ratelimit-limit``, ``ratelimit-remaining``,
  ``ratelimit-reset`` (epoch seconds) and ``ratelimit-policy`` on every answer; 429
  ``RateLimitExceeded`` beyond the injected limit.

The witness: ``received(key)`` matches posts whose record key is one the channel derives for
ledger key ``key`` (parts 1 to 9); ``duplicates`` counts the same text posted twice in answer
to the same post.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from crisiscomms.render.text_length import graphemes
from crisiscomms.testing.emulators.faults import RateWindow
from crisiscomms.testing.emulators.server import (
    EmulatorServer,
    Headers,
    Reply,
    Request,
    Route,
    iso_utc,
    json_reply,
)

MAX_GRAPHEMES = 300
MAX_BYTES = 3000
POST = "app.bsky.feed.post"
_TID = re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")
_B32 = "abcdefghijklmnopqrstuvwxyz234567"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _jwt(did: str, scope: str, ttl_s: int) -> str:
    now = int(time.time())
    payload = {"scope": scope, "sub": did, "iat": now, "exp": now + ttl_s,
               "aud": "did:web:pds.emulator"}
    return (f"{_b64({'typ': 'at+jwt', 'alg': 'HS256'})}.{_b64(payload)}."
            f"{secrets.token_urlsafe(32)}")


def _cid(data: bytes) -> str:
    """A CIDv1 (dag-cbor, sha-256) shaped string of ``data``: ``bafyrei`` + base32."""
    digest = hashlib.sha256(data).digest()
    bits = int.from_bytes(b"\x01\x71\x12\x20" + digest, "big")
    length = (4 + len(digest)) * 8
    chars = []
    for shift in range(length - 5, -5, -5):
        chars.append(_B32[(bits >> shift) & 31] if shift >= 0 else _B32[(bits << -shift) & 31])
    return "b" + "".join(chars)


def _xrpc_error(status: int, error: str, message: str, headers: Headers = ()) -> Reply:
    return json_reply(status, {"error": error, "message": message}, headers)


@dataclass(frozen=True)
class _Post:
    rkey: str
    uri: str
    cid: str
    record: dict[str, Any]
    received_at: float

    @property
    def text(self) -> str:
        return str(self.record.get("text", ""))

    @property
    def parent(self) -> str | None:
        reply = self.record.get("reply") or {}
        parent = reply.get("parent") or {}
        return str(parent.get("uri")) if parent.get("uri") else None

    def as_record(self) -> dict[str, Any]:
        images = (self.record.get("embed") or {}).get("images") or []
        return {"channel": "bluesky", "id": self.uri, "key": self.rkey, "text": self.text,
                "reply_to": self.parent, "langs": self.record.get("langs"),
                "locale": (self.record.get("langs") or [None])[0],
                "alt": [i.get("alt") for i in images if isinstance(i, dict)],
                "facets": self.record.get("facets"), "received_at": iso_utc(self.received_at)}


def _facet_problem(text: str, facets: Any) -> str | None:
    if facets is None:
        return None
    if not isinstance(facets, list):
        return "Record/facets must be an array"
    data = text.encode()
    for n, facet in enumerate(facets):
        index = facet.get("index") if isinstance(facet, dict) else None
        if not isinstance(index, dict):
            return f"Record/facets/{n}/index is required"
        start, end = index.get("byteStart"), index.get("byteEnd")
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(data)):
            return f"Record/facets/{n}/index is outside the text"
        for feature in facet.get("features") or []:
            if (feature.get("$type") == "app.bsky.richtext.facet#link"
                    and data[start:end].decode(errors="replace") != feature.get("uri")):
                return f"Record/facets/{n} does not cover the link it points at"
    return None


class BlueskyEmulator(EmulatorServer):
    channel = "bluesky"

    def __init__(self, handle: str, password: str, *, host: str = "127.0.0.1", port: int = 0,
                 rate_limit: int = 5000) -> None:
        super().__init__(host=host, port=port)
        self.account_handle = handle
        self.password = password
        self.did = "did:plc:" + "".join(secrets.choice(_B32[:26] + "234567") for _ in range(24))
        self.rate_limit = rate_limit
        self._lock = threading.Lock()
        self._tokens: set[str] = set()
        self.sessions_created = 0
        self.clear_records()

    # -- the provider -------------------------------------------------------------------------

    def route(self, request: Request) -> Route | None:
        path = request.path.rstrip("/")
        if request.method == "POST" and path == "/xrpc/com.atproto.server.createSession":
            return self._create_session
        if request.method == "POST" and path == "/xrpc/com.atproto.repo.createRecord":
            return self._create_record
        if request.method == "POST" and path == "/xrpc/com.atproto.repo.uploadBlob":
            return self._upload_blob
        if request.method == "GET" and path == "/xrpc/com.atproto.repo.getRecord":
            return self._get_record
        return None

    def authenticate(self, request: Request) -> Reply | None:
        if request.path.rstrip("/") == "/xrpc/com.atproto.server.createSession":
            return None  # its own check: the body
        auth = request.header("Authorization") or ""
        with self._lock:
            known = auth.startswith("Bearer ") and auth[7:] in self._tokens
        if not known:
            return _xrpc_error(401, "AuthenticationRequired", "Authentication Required")
        return None

    def _rate_headers(self, window: RateWindow) -> Headers:
        return (("ratelimit-limit", str(window.limit)),
                ("ratelimit-remaining", str(max(0, window.remaining))),
                ("ratelimit-reset", str(window.reset_epoch)),
                ("ratelimit-policy", f"{window.limit};w=300"))

    def rate_limited_reply(self, window: RateWindow) -> Reply:
        return _xrpc_error(429, "RateLimitExceeded", "Rate Limit Exceeded",
                           self._rate_headers(window))

    def success_headers(self, window: RateWindow | None) -> Headers:
        if window is None:
            window = RateWindow(self.rate_limit, self.rate_limit - 1, int(time.time()) + 300, 0)
        return self._rate_headers(window)

    def error_reply(self, status: int) -> Reply:
        return _xrpc_error(status, "InternalServerError", "Internal Server Error")

    def not_found_reply(self, request: Request) -> Reply:
        return _xrpc_error(501, "MethodNotImplemented", "Method Not Implemented")

    def too_large_reply(self) -> Reply:
        return _xrpc_error(413, "PayloadTooLarge", "request entity too large")

    def _json(self, request: Request) -> dict[str, Any] | None:
        try:
            data = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def _create_session(self, request: Request) -> Reply:
        data = self._json(request)
        if data is None:
            return _xrpc_error(400, "InvalidRequest", "Input must be a JSON object")
        if (str(data.get("identifier", "")).lstrip("@") not in (self.account_handle, self.did)
                or data.get("password") != self.password):
            return _xrpc_error(401, "AuthenticationRequired", "Invalid identifier or password")
        access = _jwt(self.did, "com.atproto.appPass", 7200)
        with self._lock:
            self._tokens.add(access)
            self.sessions_created += 1
        return json_reply(200, {"did": self.did, "handle": self.account_handle,
                                "accessJwt": access,
                                "refreshJwt": _jwt(self.did, "com.atproto.refresh", 86400 * 60),
                                "active": True})

    def _create_record(self, request: Request) -> Reply:
        data = self._json(request)
        if data is None:
            return _xrpc_error(400, "InvalidRequest", "Input must be a JSON object")
        if data.get("repo") not in (self.did, self.account_handle):
            return _xrpc_error(400, "InvalidRequest", "Could not find repo")
        if data.get("collection") != POST:
            return _xrpc_error(400, "InvalidRequest", "this emulator takes app.bsky.feed.post")
        record = data.get("record")
        if not isinstance(record, dict) or record.get("$type") not in (None, POST):
            return _xrpc_error(400, "InvalidRequest", "Invalid record")
        text = record.get("text")
        if not isinstance(text, str) or "createdAt" not in record:
            return _xrpc_error(400, "InvalidRequest",
                               "Invalid app.bsky.feed.post record: Record must have the "
                               "properties \"text\" and \"createdAt\"")
        count = graphemes(text)
        if count > MAX_GRAPHEMES or len(text.encode()) > MAX_BYTES:
            return _xrpc_error(400, "InvalidRequest",
                               "Invalid app.bsky.feed.post record: Record/text must not be "
                               f"longer than {MAX_GRAPHEMES} graphemes (it is {count})")
        problem = _facet_problem(text, record.get("facets")) or self._embed_problem(
            record.get("embed"))
        langs = record.get("langs") or []
        if problem is None and (not isinstance(langs, list) or len(langs) > 3):
            problem = "Record/langs must not be longer than 3 elements"
        if problem is not None:
            return _xrpc_error(400, "InvalidRequest", f"Invalid app.bsky.feed.post record: "
                                                      f"{problem}")
        rkey = data.get("rkey") or _tid_now()
        if not isinstance(rkey, str) or not _TID.match(rkey):
            return _xrpc_error(400, "InvalidRequest", "Invalid record key: not a TID")
        body = json.dumps(record, sort_keys=True).encode()
        with self._lock:
            reply = record.get("reply")
            if reply is not None:
                for which in ("root", "parent"):
                    ref = reply.get(which) if isinstance(reply, dict) else None
                    found = self._by_uri.get(str((ref or {}).get("uri")))
                    if found is None or found.cid != (ref or {}).get("cid"):
                        return _xrpc_error(400, "InvalidRequest",
                                           f"Invalid app.bsky.feed.post record: reply {which} "
                                           "does not exist")
            if rkey in self._by_rkey:
                return _xrpc_error(400, "InvalidRequest", "Record already exists")
            post = _Post(rkey, f"at://{self.did}/{POST}/{rkey}", _cid(body), record, time.time())
            self._posts.append(post)
            self._by_rkey[rkey] = post
            self._by_uri[post.uri] = post
        return json_reply(200, {"uri": post.uri, "cid": post.cid,
                                "commit": {"cid": _cid(body + b"commit"), "rev": _tid_now()},
                                "validationStatus": "valid"})

    def _upload_blob(self, request: Request) -> Reply:
        if not request.body or len(request.body) > 1_000_000:
            return _xrpc_error(400, "InvalidRequest", "A blob is 1 to 1,000,000 bytes")
        cid = _cid(request.body)
        mime = (request.header("Content-Type") or "application/octet-stream").split(";")[0]
        with self._lock:
            self._blobs[cid] = len(request.body)
        return json_reply(200, {"blob": {"$type": "blob", "ref": {"$link": cid},
                                         "mimeType": mime, "size": len(request.body)}})

    def _embed_problem(self, embed: Any) -> str | None:
        if embed is None:
            return None
        if not isinstance(embed, dict) or embed.get("$type") != "app.bsky.embed.images":
            return "this emulator takes app.bsky.embed.images embeds only"
        images = embed.get("images")
        if not isinstance(images, list) or not 1 <= len(images) <= 4:
            return "Record/embed/images must hold 1 to 4 images"
        for n, image in enumerate(images):
            if not isinstance(image, dict) or not isinstance(image.get("alt"), str):
                return f"Record/embed/images/{n} must have the property \"alt\""
            ref = ((image.get("image") or {}).get("ref") or {}).get("$link")
            with self._lock:
                known = ref in self._blobs
            if not known:
                return f"Record/embed/images/{n}/image is not an uploaded blob"
        return None

    def _get_record(self, request: Request) -> Reply:
        rkey = request.query_one("rkey") or ""
        if request.query_one("repo") not in (self.did, self.account_handle) or \
                request.query_one("collection") != POST:
            return _xrpc_error(400, "RecordNotFound", "Could not locate record")
        with self._lock:
            post = self._by_rkey.get(rkey)
        if post is None:
            return _xrpc_error(400, "RecordNotFound", f"Could not locate record: at://"
                                                      f"{self.did}/{POST}/{rkey}")
        return json_reply(200, {"uri": post.uri, "cid": post.cid,
                                "value": {"$type": POST, **post.record}})

    # -- the witness --------------------------------------------------------------------------

    def _matching(self, key: str | None) -> list[_Post]:
        with self._lock:
            posts = list(self._posts)
        if key is None:
            return posts
        from crisiscomms.channels.bluesky import record_key

        wanted = {record_key(key, n) for n in range(1, 10)}
        return [p for p in posts if p.rkey in wanted]

    def iter_received(self, key: str | None = None) -> Iterator[dict[str, Any]]:
        for post in self._matching(key):
            yield post.as_record()

    def key_count(self, key: str) -> int:
        return len(self._matching(key))

    def record_stats(self) -> dict[str, int]:
        posts = self._matching(None)
        same = Counter((p.text, p.parent) for p in posts)
        return {"accepted_messages": len(posts), "recipients": len(posts),
                "duplicates": sum(n - 1 for n in same.values() if n > 1),
                "distinct_keys": len(posts)}

    def clear_records(self) -> None:
        with self._lock:
            self._posts: list[_Post] = []
            self._by_rkey: dict[str, _Post] = {}
            self._by_uri: dict[str, _Post] = {}
            self._blobs: dict[str, int] = {}


def _tid_now() -> str:
    value = (int(time.time() * 1_000_000) << 10) | secrets.randbelow(1024)
    chars = []
    for _ in range(13):
        chars.append("234567abcdefghijklmnopqrstuvwxyz"[value & 31])
        value >>= 5
    return "".join(reversed(chars))
