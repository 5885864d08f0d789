"""Twilio Programmable Messaging emulator: the Messages resource as the ``twilio`` SDK calls it.

- ``POST /2010-04-01/Accounts/<AccountSid>/Messages.json`` (form-encoded ``To``, ``From`` or
  ``MessagingServiceSid``, ``Body``, ``StatusCallback``) -> 201 with the Message resource
  (``sid`` ``SM…``, ``status`` ``queued``, ``num_segments``, ``direction`` ``outbound-api``…).
  Refusals in Twilio's JSON (``code``, ``message``, ``more_info``, ``status``): 21604/21211
  (no or invalid ``To``: not an E.164 number ``phonenumbers`` finds possible), 21603 (no
  sender), 21602 (no body), 21617 (body over 1,600 characters), 21610 (the number replied
  STOP: Twilio's Advanced Opt-Out blocks it), 20003 (401, wrong credentials), 20404 (another
  account). Over the rate (fault injection): 429 code 20429 with ``Retry-After``.
- ``GET …/Messages.json?To=&From=&PageSize=`` newest first, in Twilio's page envelope, and
  ``GET …/Messages/<sid>.json``: what reconciliation asks.
- Status callbacks: each accepted message with a ``StatusCallback`` gets ``sent`` then
  ``delivered`` (or ``undelivered`` with ``ErrorCode`` 30003 for a number in
  :meth:`TwilioEmulator.set_undeliverable`) posted form-encoded to that exact URL, signed with
  ``X-Twilio-Signature`` (HMAC-SHA1 of the URL and the sorted parameters under the auth token,
  computed by the SDK's own ``RequestValidator``) from a background poster.
- Inbound replies: :meth:`TwilioEmulator.inbound` (or ``POST /_emulator/inbound``
  ``{"from", "body"}``) posts an incoming message, signed, to the inbound URL (the number's
  "A message comes in" webhook); STOP/START/HELP keywords carry ``OptOutType`` and STOP/START
  change what the emulator later accepts, as Twilio does.

Records (``/_emulator/received``): one per accepted message: the ledger key read from the
``StatusCallback``'s ``key`` parameter, ``to``, ``body``, ``sid``, ``segments``, ``encoding``.
``duplicates`` counts (number, body) pairs accepted more than once: what a person would see
twice.
"""

from __future__ import annotations

import base64
import queue
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import httpx
import phonenumbers
from twilio.request_validator import RequestValidator

from crisiscomms.delivery.sms_events import keyword
from crisiscomms.render.sms_segments import sms_segments
from crisiscomms.testing.emulators.faults import Faults, RateWindow
from crisiscomms.testing.emulators.server import (
    EmulatorServer,
    Reply,
    Request,
    Route,
    json_reply,
    parse_json,
)

API_VERSION = "2010-04-01"
MAX_BODY_CHARS = 1600
def _error(status: int, code: int, message: str, headers: tuple[tuple[str, str], ...] = (),
           ) -> Reply:
    return json_reply(status, {"code": code, "message": message,
                               "more_info": f"https://www.twilio.com/docs/errors/{code}",
                               "status": status}, headers)


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


@dataclass(frozen=True)
class _Message:
    sid: str
    to: str
    sender: str
    body: str
    key: str | None
    created: float
    segments: int
    encoding: str
    callback: str | None
    service: str | None

    def resource(self, account: str, status: str = "queued") -> dict[str, Any]:
        date = formatdate(self.created, usegmt=True)
        return {
            "account_sid": account, "api_version": API_VERSION, "body": self.body,
            "date_created": date, "date_updated": date, "date_sent": None,
            "direction": "outbound-api", "error_code": None, "error_message": None,
            "from": None if self.service and not self.sender else self.sender,
            "messaging_service_sid": self.service, "num_media": "0",
            "num_segments": str(self.segments), "price": None, "price_unit": "USD",
            "sid": self.sid, "status": status, "to": self.to,
            "uri": f"/{API_VERSION}/Accounts/{account}/Messages/{self.sid}.json",
            "subresource_uris": {
                "media": f"/{API_VERSION}/Accounts/{account}/Messages/{self.sid}/Media.json"},
        }


class _Poster:
    """Posts signed form requests (status callbacks) in order from one background thread."""

    def __init__(self, token: str, timeout_s: float = 10.0) -> None:
        self.validator = RequestValidator(token)
        self.timeout_s = timeout_s
        self._queue: queue.Queue[tuple[str, dict[str, str]] | None] = queue.Queue()
        self._pending = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self.posted: Counter[str] = Counter()
        self._thread = threading.Thread(target=self._run, name="twilio-callbacks", daemon=True)
        self._thread.start()

    def put(self, url: str, params: dict[str, str]) -> None:
        with self._lock:
            self._pending += 1
        self._queue.put((url, params))

    def flush(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout_s) as client:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                url, params = item
                outcome = "error"
                try:
                    signature = self.validator.compute_signature(url, params)
                    response = client.post(url, data=params,
                                           headers={"X-Twilio-Signature": signature})
                    outcome = str(response.status_code)
                except httpx.HTTPError:
                    pass
                with self._idle:
                    self.posted[outcome] += 1
                    self._pending -= 1
                    self._idle.notify_all()


class TwilioEmulator(EmulatorServer):
    """Twilio's Messages resource; point ``twilio.rest.Client`` at it with an HTTP client that
    rewrites ``https://api.twilio.com`` to :attr:`url` (``channels/twilio_sms.py`` does)."""

    channel = "sms"

    def __init__(self, account_sid: str, auth_token: str, *, host: str = "127.0.0.1",
                 port: int = 0, faults: Faults | None = None,
                 inbound_url: str | None = None) -> None:
        if not account_sid.startswith("AC") or not auth_token:
            raise ValueError("account_sid must start with AC and auth_token must not be empty")
        super().__init__(host=host, port=port, faults=faults)
        self.account_sid = account_sid
        self._authorization = "Basic " + base64.b64encode(
            f"{account_sid}:{auth_token}".encode()).decode()
        self._token = auth_token
        self._lock = threading.Lock()
        self._messages: list[_Message] = []
        self._by_sid: dict[str, _Message] = {}
        self._keys: Counter[str] = Counter()
        self._pairs: Counter[tuple[str, str]] = Counter()
        self.opted_out: set[str] = set()
        self.undeliverable: set[str] = set()
        self.inbound_url = inbound_url
        self._poster: _Poster | None = None

    @property
    def auth_token(self) -> str:
        """The account's auth token (drills hand it to the SMS channel and the SMS app)."""
        return self._token

    @property
    def poster(self) -> _Poster:
        with self._lock:
            if self._poster is None:
                self._poster = _Poster(self._token)
            return self._poster

    def set_undeliverable(self, numbers: set[str]) -> None:
        """Numbers whose messages are accepted and then ``undelivered`` (error 30003)."""
        with self._lock:
            self.undeliverable = set(numbers)

    def flush_callbacks(self, timeout_s: float = 30.0) -> bool:
        """Wait until every status callback so far was posted (True), or timeout."""
        return True if self._poster is None else self._poster.flush(timeout_s)

    def callback_stats(self) -> dict[str, int]:
        return {} if self._poster is None else dict(self._poster.posted)

    def stop(self) -> None:
        poster, self._poster = self._poster, None
        if poster is not None:
            poster.stop()
        super().stop()

    # ---- inbound ----------------------------------------------------------------------------

    def inbound(self, sender: str, body: str, *, to: str = "+15005550006",
                url: str | None = None, sign: bool = True) -> httpx.Response:
        """A person texts ``body`` from ``sender``: the signed webhook Twilio posts to the
        number's inbound URL (``url`` or :attr:`inbound_url`); STOP and START change what
        is accepted later, as Twilio's Advanced Opt-Out does."""
        target = url or self.inbound_url
        if not target:
            raise ValueError("no inbound URL: pass url= or set inbound_url")
        sid = _sid("SM")
        params = {"ToCountry": "US", "SmsMessageSid": sid, "NumMedia": "0", "SmsSid": sid,
                  "SmsStatus": "received", "Body": body, "To": to, "NumSegments": "1",
                  "MessageSid": sid, "AccountSid": self.account_sid, "From": sender,
                  "ApiVersion": API_VERSION}
        word = keyword(body)
        if word is not None:
            params["OptOutType"] = word
            with self._lock:
                if word == "STOP":
                    self.opted_out.add(sender)
                elif word == "START":
                    self.opted_out.discard(sender)
        headers = {}
        if sign:
            headers["X-Twilio-Signature"] = RequestValidator(self._token).compute_signature(
                target, params)
        return httpx.post(target, data=params, headers=headers, timeout=10)

    def control(self, request: Request, name: str) -> Reply | None:
        if name == "inbound" and request.method == "POST":
            try:
                body = parse_json(request.body) if request.body else {}
                answer = self.inbound(str(body["from"]), str(body["body"]),
                                      url=body.get("url"))
            except (ValueError, KeyError, TypeError, httpx.HTTPError) as exc:
                return json_reply(400, {"error": str(exc)})
            return json_reply(200, {"status": answer.status_code, "body": answer.text})
        if name == "callbacks" and request.method == "GET":
            return json_reply(200, self.callback_stats())
        return None

    # ---- provider API -----------------------------------------------------------------------

    def _account_path(self, request: Request) -> tuple[str, str] | None:
        prefix = f"/{API_VERSION}/Accounts/"
        if not request.path.startswith(prefix):
            return None
        account, _, rest = request.path[len(prefix):].partition("/")
        return account, rest

    def route(self, request: Request) -> Route | None:
        found = self._account_path(request)
        if found is None:
            return None
        _, rest = found
        if rest == "Messages.json" and request.method == "POST":
            return self._create
        if rest == "Messages.json" and request.method == "GET":
            return self._list
        if rest.startswith("Messages/") and rest.endswith(".json") and request.method == "GET":
            return self._fetch
        return None

    def authenticate(self, request: Request) -> Reply | None:
        header = (request.header("Authorization") or "").strip()
        if not secrets.compare_digest(header.encode(), self._authorization.encode()):
            return _error(401, 20003, "Authenticate")
        found = self._account_path(request)
        if found is not None and found[0] != self.account_sid:
            return _error(404, 20404, f"The requested resource {request.path} was not found")
        return None

    def not_found_reply(self, request: Request) -> Reply:
        return _error(404, 20404, f"The requested resource {request.path} was not found")

    def too_large_reply(self) -> Reply:
        return _error(413, 21617, "Request entity too large")

    def rate_limited_reply(self, window: RateWindow) -> Reply:
        return _error(429, 20429, "Too Many Requests",
                      (("Retry-After", str(window.retry_after_s)),))

    def error_reply(self, status: int) -> Reply:
        if status >= 500:
            return _error(status, 20500, "An internal server error has occurred")
        return _error(status, 20001, "Unknown error")

    def _create(self, request: Request) -> Reply:
        try:
            form = dict(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            return _error(400, 20001, "Invalid request body")
        to = form.get("To", "").strip()
        if not to:
            return _error(400, 21604, "A 'To' phone number is required.")
        if not _possible(to):
            return _error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        sender = form.get("From", "").strip()
        service = form.get("MessagingServiceSid", "").strip() or None
        if not sender and not service:
            return _error(400, 21603, "A 'From' phone number is required.")
        body = form.get("Body", "")
        if not body:
            return _error(400, 21602, "Message body is required.")
        if len(body) > MAX_BODY_CHARS:
            return _error(400, 21617,
                          "The concatenated message body exceeds the 1600 character limit.")
        with self._lock:
            if to in self.opted_out:
                return _error(400, 21610, "Attempt to send to unsubscribed recipient")
        callback = form.get("StatusCallback") or None
        key = None
        if callback:
            keys = parse_qs(urlsplit(callback).query).get("key")
            key = keys[0] if keys else None
        counted = sms_segments(body)
        message = _Message(_sid("SM"), to, sender or "", body, key, time.time(), counted.count,
                           counted.encoding.value, callback, service)
        with self._lock:
            self._messages.append(message)
            self._by_sid[message.sid] = message
            self._pairs[(to, body)] += 1
            if key:
                self._keys[key] += 1
            undeliverable = to in self.undeliverable
        if callback:
            self._callbacks(message, undeliverable)
        return json_reply(201, message.resource(self.account_sid))

    def _callbacks(self, message: _Message, undeliverable: bool) -> None:
        assert message.callback is not None
        base = {"AccountSid": self.account_sid, "ApiVersion": API_VERSION,
                "From": message.sender, "MessageSid": message.sid, "SmsSid": message.sid,
                "To": message.to}
        if message.service:
            base["MessagingServiceSid"] = message.service
        poster = self.poster
        poster.put(message.callback, {**base, "MessageStatus": "sent", "SmsStatus": "sent"})
        if undeliverable:
            poster.put(message.callback, {**base, "MessageStatus": "undelivered",
                                          "SmsStatus": "undelivered", "ErrorCode": "30003"})
        else:
            poster.put(message.callback, {**base, "MessageStatus": "delivered",
                                          "SmsStatus": "delivered"})

    def _list(self, request: Request) -> Reply:
        to, sender = request.query_one("To"), request.query_one("From")
        try:
            size = max(1, min(1000, int(request.query_one("PageSize") or 50)))
        except ValueError:
            return _error(400, 20001, "PageSize must be an integer")
        with self._lock:
            found = [m for m in reversed(self._messages)
                     if (to is None or m.to == to) and (sender is None or m.sender == sender)]
        page = [m.resource(self.account_sid, "sent") for m in found[:size]]
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"
        return json_reply(200, {"messages": page, "end": max(len(page) - 1, 0),
                                "first_page_uri": uri, "next_page_uri": None, "page": 0,
                                "page_size": size, "previous_page_uri": None, "start": 0,
                                "uri": uri})

    def _fetch(self, request: Request) -> Reply:
        sid = request.path.rsplit("/", 1)[-1].removesuffix(".json")
        with self._lock:
            message = self._by_sid.get(sid)
        if message is None:
            return self.not_found_reply(request)
        return json_reply(200, message.resource(self.account_sid, "sent"))

    # ---- records ----------------------------------------------------------------------------

    def iter_received(self, key: str | None = None) -> Iterator[dict[str, Any]]:
        with self._lock:
            messages = list(self._messages)
        for m in messages:
            if key is not None and m.key != key:
                continue
            yield {"channel": "sms", "key": m.key, "sid": m.sid, "to": m.to, "from": m.sender,
                   "body": m.body, "segments": m.segments, "encoding": m.encoding}

    def key_count(self, key: str) -> int:
        with self._lock:
            return self._keys.get(key, 0)

    def record_stats(self) -> dict[str, int]:
        with self._lock:
            return {"accepted_messages": len(self._messages),
                    "recipients": len(self._messages),
                    "duplicates": sum(1 for n in self._pairs.values() if n > 1),
                    "distinct_keys": len(self._keys),
                    "segments": sum(m.segments for m in self._messages)}

    def clear_records(self) -> None:
        with self._lock:
            self._messages.clear()
            self._by_sid.clear()
            self._keys.clear()
            self._pairs.clear()


def _possible(number: str) -> bool:
    """E.164 (``+`` and digits) that ``phonenumbers`` finds a possible number."""
    if not number.startswith("+") or not number[1:].isdigit():
        return False
    try:
        return phonenumbers.is_possible_number(phonenumbers.parse(number, None))
    except phonenumbers.NumberParseException:
        return False
