"""The sending systems and their keys: the sources file.

The file (``Settings.resolved_intake_sources_path``, by default
``<data_dir>/intake_sources.toml``, mode 600, never committed) is written by ``crisiscomms
sources add|rotate|remove``. One table per sending system::

    [sources.prod-alertmanager]
    kind = "alertmanager"
    rate_per_s = 20.0                     # optional: the settings' intake_rate_per_s else

    [[sources.prod-alertmanager.keys]]
    secret = "..."                        # whsec_... (events, recall) or a token / secret
    created_at = 2026-12-01T07:00:00Z
    expires_at = 2026-12-02T07:00:00Z     # set by a rotation: valid until then

- **Names** are in the URL (``/v1/events/alertmanager/prod-alertmanager``), the audit trail
  and the events: ``^[a-z0-9][a-z0-9_-]{0,63}$``.
- **Keys**: ``add`` generates one (``whsec_`` for Standard Webhooks senders, a random token
  otherwise) unless the sender generates its own (PagerDuty does: it is read from standard
  input); ``rotate`` adds a new one and keeps the previous ones valid for a grace period, so
  the sender can be switched over without losing an event.
- **Drill keys**: :data:`DRILL_SECRETS` are published (the demo and the docs use them); in
  production mode (``Settings.mode``) they, and placeholders such as ``changeme``, are
  refused: ``add``/``rotate`` will not store them, and a file holding one verifies nothing
  with it (:meth:`SourceStore.problems` names the source, the API refuses to start).

A file readable by others is refused, as ssh refuses a private key anyone can read. Reads are
cached by the file's identity (mtime, size, inode): the API asks on every request, and a
``stat`` is all that costs until the file changes or a rotated key expires.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from crisiscomms.core.errors import IntakeError
from crisiscomms.core.settings import PLACEHOLDER_SECRETS
from crisiscomms.intake.contract import Source, SourceKind
from crisiscomms.intake.signatures import new_secret, new_token, secret_key

if TYPE_CHECKING:
    from crisiscomms.core.settings import Settings

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MIN_TOKEN_LENGTH = 16
"""Shortest bearer token or HMAC secret accepted from a sender (PagerDuty's are 64)."""
STANDARD_KINDS = frozenset({SourceKind.events, SourceKind.recall})
"""Kinds signed the Standard Webhooks way: their keys are ``whsec_`` secrets."""
SENDER_GENERATED = frozenset({SourceKind.pagerduty})
"""Kinds whose sender generates the secret (PagerDuty shows it when the subscription is made)."""
FILE_FIELD = "intake_sources_path"

DRILL_SECRETS: Mapping[SourceKind, str] = MappingProxyType({
    SourceKind.events: "whsec_Y3Jpc2lzY29tbXMgZHJpbGwga2V5OiBldmVudHMgb25seQ==",
    SourceKind.recall: "whsec_Y3Jpc2lzY29tbXMgZHJpbGwga2V5OiByZWNhbGwgb25seQ==",
    SourceKind.alertmanager: "crisiscomms-drill-token-alertmanager",
    SourceKind.pagerduty: "crisiscomms-drill-secret-pagerduty",
    SourceKind.grafana: "crisiscomms-drill-token-grafana",
})
"""Published keys for drills, the demo and the docs' examples: refused in production."""
_PUBLISHED = frozenset(DRILL_SECRETS.values())


def key_id(secret: str) -> str:
    """A short, non-secret name of a key (the first 8 hex digits of its SHA-256): which key is
    which in ``sources list``, without showing it."""
    return hashlib.sha256(secret.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class KeyInfo:
    """A key as ``entries()`` shows it: its id and dates, never the key."""

    key_id: str
    created_at: datetime
    expires_at: datetime | None


@dataclass(frozen=True)
class SourceEntry:
    """A source as ``entries()`` shows it (no secret): ``rate_per_s`` None is the default;
    ``problem`` says why it is refused in this mode (a drill key in production)."""

    name: str
    kind: SourceKind
    rate_per_s: float | None
    keys: tuple[KeyInfo, ...]
    problem: str | None = None


@dataclass(frozen=True)
class _Key:
    secret: str = field(repr=False)
    created_at: datetime
    expires_at: datetime | None = None

    def valid_at(self, moment: datetime) -> bool:
        return self.expires_at is None or moment < self.expires_at


@dataclass(frozen=True)
class _Record:
    name: str
    kind: SourceKind
    rate_per_s: float | None
    keys: tuple[_Key, ...]  # newest first

    def toml(self) -> str:
        lines = [f"[sources.{self.name}]", f"kind = {json.dumps(self.kind.value)}"]
        if self.rate_per_s is not None:
            lines.append(f"rate_per_s = {float(self.rate_per_s)!r}")
        for key in self.keys:
            lines += ["", f"[[sources.{self.name}.keys]]", f"secret = {json.dumps(key.secret)}",
                      f"created_at = {_toml_time(key.created_at)}"]
            if key.expires_at is not None:
                lines.append(f"expires_at = {_toml_time(key.expires_at)}")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class _Loaded:
    identity: tuple[int, int, int] | None
    records: Mapping[str, _Record]
    sources: Mapping[str, Source]
    problems: Mapping[str, str]
    by_kind: Mapping[SourceKind, tuple[Source, ...]]
    valid_until: float
    """When a rotated key expires next (the cached sources must be recomputed then)."""


def _toml_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def check_name(name: str) -> str:
    """``name`` if it may name a source (it is in a URL); IntakeError 422 otherwise."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise IntakeError("source name: 1 to 64 of a-z, 0-9, '-' and '_', starting with a "
                          "letter or digit", status=422, field="name")
    return name


def secret_problem(kind: SourceKind, secret: str, *, mode: str) -> str | None:
    """Why ``secret`` may not be a key of a ``kind`` source in ``mode`` (never quoting it), or
    None."""
    if mode != "drill" and (secret in _PUBLISHED
                            or secret.strip().lower() in PLACEHOLDER_SECRETS):
        return ("is a published drill key or a placeholder: refused outside drills; "
                "generate one (leave out --secret-stdin)")
    if kind in STANDARD_KINDS:
        try:
            secret_key(secret)
        except ValueError as exc:
            return str(exc)
        return None
    if len(secret) < MIN_TOKEN_LENGTH or secret != secret.strip() or any(
            not (0x21 <= ord(c) <= 0x7E) for c in secret):
        return (f"must be at least {MIN_TOKEN_LENGTH} visible ASCII characters, without "
                "spaces")
    return None


def new_key(kind: SourceKind) -> str:
    """A fresh key for a ``kind`` source: a ``whsec_`` secret or a random token."""
    return new_secret() if kind in STANDARD_KINDS else new_token()


class SourceStore:
    """The sources file: read (cached), add, rotate, remove.

    ``mode`` is ``Settings.mode`` (drill keys are refused outside ``drill``);
    ``default_rate_per_s`` is ``Settings.intake_rate_per_s``."""

    def __init__(self, path: Path, *, mode: Literal["production", "drill"] = "production",
                 default_rate_per_s: float = 50.0) -> None:
        self.path = path
        self._file = os.fspath(path)
        self.mode = mode
        self.default_rate_per_s = default_rate_per_s
        self._loaded: _Loaded | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SourceStore:
        return cls(settings.resolved_intake_sources_path, mode=settings.mode,
                   default_rate_per_s=settings.intake_rate_per_s)

    def __repr__(self) -> str:
        return f"SourceStore(path={str(self.path)!r}, mode={self.mode!r})"

    # --- reading ---------------------------------------------------------------------

    def get(self, name: str) -> Source:
        """The source ``name`` with its keys valid now (newest first); IntakeError 401 when
        there is none (the URL names an unknown source)."""
        found = self._state().sources.get(name)
        if found is None:
            shown = name if NAME_PATTERN.match(name) else "(not a source name)"
            raise IntakeError(f"source: no source named {shown}", status=401, field="source",
                              reason="unknown source")
        return found

    def find(self, name: str, kind: SourceKind) -> Source:
        """The source ``name`` when it is of ``kind`` (the route it was posted to); the same
        401 as an unknown one otherwise."""
        source = self.get(name)
        if source.kind is not kind:
            raise IntakeError(f"source: {name} is not a {kind.value} source", status=401,
                              field="source", reason="wrong kind of source")
        return source

    def of_kind(self, kind: SourceKind) -> tuple[Source, ...]:
        """Every source of ``kind`` (``/v1/events`` tries each events source's keys)."""
        return self._state().by_kind.get(kind, ())

    def entries(self) -> list[SourceEntry]:
        """The sources, by name, without a secret."""
        loaded = self._state()
        return [SourceEntry(r.name, r.kind, r.rate_per_s,
                            tuple(KeyInfo(key_id(k.secret), k.created_at, k.expires_at)
                                  for k in r.keys), loaded.problems.get(r.name))
                for r in sorted(loaded.records.values(), key=lambda r: r.name)]

    def problems(self) -> dict[str, str]:
        """Sources refused in this mode, with why (the API refuses to start while any)."""
        return dict(self._state().problems)

    def check(self) -> None:
        """Raise IntakeError (naming the sources, never a key) unless every source is usable:
        the API calls it at start."""
        problems = self.problems()
        if problems:
            names = sorted(problems)
            raise IntakeError(
                f"{self.path}: sources {', '.join(names)} hold a published drill key or a "
                f"placeholder, refused in {self.mode} mode; rotate them: crisiscomms sources "
                "rotate NAME --grace-hours 0", status=503, field=FILE_FIELD, values=names)

    def _state(self) -> _Loaded:
        try:
            st = os.stat(self._file)
            identity: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            st, identity = None, None
        loaded = self._loaded
        if loaded is not None and loaded.identity == identity and time.time() < \
                loaded.valid_until:
            return loaded
        if loaded is None or loaded.identity != identity:
            records = self._read(st)
        else:
            records = dict(loaded.records)
        self._loaded = self._compute(identity, records)
        return self._loaded

    def _read(self, st: os.stat_result | None) -> dict[str, _Record]:
        if st is None:
            return {}
        mode = stat.S_IMODE(st.st_mode)
        if os.name == "posix" and mode & 0o077:
            raise IntakeError(f"{self.path} is readable by other users (mode {mode:o}); run: "
                              f"chmod 600 {self.path}", status=503, field=FILE_FIELD)
        try:
            data = tomllib.loads(self.path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise IntakeError(f"{self.path}: not a sources file: {exc}", status=503,
                              field=FILE_FIELD) from None
        table = data.get("sources") or {}
        if not isinstance(table, dict):
            raise IntakeError(f"{self.path}: sources is not a table", status=503,
                              field=FILE_FIELD)
        return {name: self._record(name, entry) for name, entry in table.items()}

    def _record(self, name: str, entry: Any) -> _Record:
        def bad(what: str) -> IntakeError:
            return IntakeError(f"{self.path}: sources.{json.dumps(name)}: {what}", status=503,
                               field=FILE_FIELD)

        if not NAME_PATTERN.match(name):
            raise bad("not a source name (a-z, 0-9, '-', '_')")
        if not isinstance(entry, dict):
            raise bad("not a table")
        try:
            kind = SourceKind(str(entry.get("kind")))
        except ValueError:
            raise bad(f"kind is not one of {', '.join(k.value for k in SourceKind)}") from None
        rate = entry.get("rate_per_s")
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float)
                                 or rate <= 0):
            raise bad("rate_per_s is not a positive number")
        keys = []
        for raw in entry.get("keys") or []:
            secret, created = (raw.get("secret"), raw.get("created_at")) if isinstance(
                raw, dict) else (None, None)
            expires = raw.get("expires_at") if isinstance(raw, dict) else None
            if not isinstance(secret, str) or not isinstance(created, datetime) or not (
                    expires is None or isinstance(expires, datetime)):
                raise bad("a key needs secret (text), created_at and optionally expires_at "
                          "(dates)")
            keys.append(_Key(secret, _aware(created), _aware(expires) if expires else None))
        keys.sort(key=lambda k: k.created_at, reverse=True)
        return _Record(name, kind, float(rate) if rate is not None else None, tuple(keys))

    def _compute(self, identity: tuple[int, int, int] | None,
                 records: Mapping[str, _Record]) -> _Loaded:
        now = datetime.now(UTC)
        sources: dict[str, Source] = {}
        problems: dict[str, str] = {}
        next_expiry = float("inf")
        for record in records.values():
            secrets = []
            for key in record.keys:
                if not key.valid_at(now):
                    continue
                if key.expires_at is not None:
                    next_expiry = min(next_expiry, key.expires_at.timestamp())
                problem = secret_problem(record.kind, key.secret, mode=self.mode)
                if problem is not None:
                    problems[record.name] = f"a key {problem}"
                    continue
                secrets.append(key.secret)
            sources[record.name] = Source(record.name, record.kind, tuple(secrets),
                                          record.rate_per_s or self.default_rate_per_s)
        by_kind: dict[SourceKind, tuple[Source, ...]] = {}
        for source in sources.values():
            by_kind[source.kind] = (*by_kind.get(source.kind, ()), source)
        return _Loaded(identity, MappingProxyType(dict(records)), MappingProxyType(sources),
                       MappingProxyType(problems), MappingProxyType(by_kind), next_expiry)

    # --- writing ---------------------------------------------------------------------

    def add(self, name: str, kind: SourceKind | str, *, secret: str | None = None,
            rate_per_s: float | None = None) -> str:
        """A new source; returns its key (generated unless given), to be shown once."""
        check_name(name)
        kind = parse_kind(kind)
        records = dict(self._state().records)
        if name in records:
            raise IntakeError(f"name: a source named {name} exists; rotate its key with "
                              f"crisiscomms sources rotate {name}", status=422, field="name")
        if rate_per_s is not None and not rate_per_s > 0:
            raise IntakeError("rate_per_s: must be a positive number", status=422,
                              field="rate_per_s")
        if secret is None and kind in SENDER_GENERATED:
            raise IntakeError(f"secret: {kind.value} generates the secret itself: create the "
                              "webhook there, then give its secret on standard input "
                              "(--secret-stdin)", status=422, field="secret")
        key = self._key(kind, secret)
        records[name] = _Record(name, kind, rate_per_s, (key,))
        self._save(records)
        return key.secret

    def rotate(self, name: str, *, secret: str | None = None, grace_hours: float = 24) -> str:
        """A new key for ``name``; the previous ones stay valid for ``grace_hours`` (0: no
        longer). Returns the new key, to be shown once."""
        if grace_hours < 0:
            raise IntakeError("grace_hours: must be 0 or more", status=422, field="grace_hours")
        records = dict(self._state().records)
        record = records.get(name)
        if record is None:
            raise IntakeError(f"name: no source named {check_name(name)}", status=422,
                              field="name")
        key = self._key(record.kind, secret)
        now = key.created_at
        until = now + timedelta(hours=grace_hours)
        kept = tuple(_Key(k.secret, k.created_at,
                          until if k.expires_at is None else min(k.expires_at, until))
                     for k in record.keys if k.valid_at(now) and grace_hours > 0)
        records[name] = _Record(name, record.kind, record.rate_per_s, (key, *kept))
        self._save(records)
        return key.secret

    def remove(self, name: str) -> None:
        records = dict(self._state().records)
        if name not in records:
            raise IntakeError(f"name: no source named {check_name(name)}", status=422,
                              field="name")
        del records[name]
        self._save(records)

    def _key(self, kind: SourceKind, secret: str | None) -> _Key:
        if secret is None:
            secret = new_key(kind)
        else:
            problem = secret_problem(kind, secret, mode=self.mode)
            if problem is not None:
                raise IntakeError(f"secret: {problem}", status=422, field="secret",
                                  reason=problem)
        return _Key(secret, datetime.now(UTC))

    def _save(self, records: Mapping[str, _Record]) -> None:
        """Replace the file atomically, mode 600, without expired keys."""
        now = datetime.now(UTC)
        live = [_Record(r.name, r.kind, r.rate_per_s,
                        tuple(k for k in r.keys if k.valid_at(now)))
                for r in sorted(records.values(), key=lambda r: r.name)]
        text = ("# crisiscomms intake sources (crisiscomms sources add). Secret: mode 600, "
                "never commit it.\n\n" + "\n".join(r.toml() for r in live))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)
        self._loaded = None


def parse_kind(kind: SourceKind | str) -> SourceKind:
    """``kind`` as a SourceKind; IntakeError 422 (field ``kind``) naming the kinds."""
    try:
        return SourceKind(kind)
    except ValueError:
        raise IntakeError(f"kind: one of {', '.join(k.value for k in SourceKind)}",
                          status=422, field="kind") from None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
