"""The systems that may send events: ``sources add|rotate|list|remove``.

Sources live in the sources file (``CRISISCOMMS_INTAKE_SOURCES_PATH``, default
``data/intake_sources.toml``, mode 600). ``add`` and ``rotate`` print the key once, on one line,
then what to paste into the sender (which refers to "the key above" rather than repeating it);
``list`` never shows a key. A key the sender generates (PagerDuty's) is read from standard input
(``--secret-stdin``) and never printed.
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from crisiscomms.cli import common
from crisiscomms.cli.common import app, out

if TYPE_CHECKING:
    from crisiscomms.intake.contract import SourceKind
    from crisiscomms.intake.sources import SourceStore

sources_app = typer.Typer(help="The systems that may send events (Alertmanager, PagerDuty, "
                               "Grafana, recall feeds, our own): their keys and URLs.",
                          no_args_is_help=True)
app.add_typer(sources_app, name="sources")

KINDS_HELP = "events (our shape), alertmanager, pagerduty, grafana or recall"


def _store() -> tuple[SourceStore, str]:
    from crisiscomms.intake.sources import SourceStore

    settings = common.load_settings()
    return SourceStore.from_settings(settings), settings.intake_url.rstrip("/")


def _secret(from_stdin: bool) -> str | None:
    return sys.stdin.readline().strip() if from_stdin else None


def _say(text: str) -> None:
    out.print(text, markup=False, highlight=False, soft_wrap=True)


def source_url(base: str, kind: SourceKind, name: str) -> str:
    """Where a ``kind`` source posts: ``/v1/events`` for ours, else ``/v1/events/<kind>/<name>``."""
    from crisiscomms.intake.contract import SourceKind

    return f"{base}/v1/events" if kind is SourceKind.events else \
        f"{base}/v1/events/{kind.value}/{name}"


def sender_setup(kind: SourceKind, name: str, url: str) -> str:
    """What to paste into the sender; it refers to the key printed above, never repeats it."""
    from crisiscomms.intake.contract import SourceKind
    from crisiscomms.intake.signatures import GRAFANA_SIGNATURE, GRAFANA_TIMESTAMP

    if kind is SourceKind.alertmanager:
        return f"""In alertmanager.yml, a receiver (and route it from your route tree):

receivers:
  - name: crisiscomms
    webhook_configs:
      - url: {url}
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials_file: /etc/alertmanager/secrets/crisiscomms-{name}.token  # the key above
            # or: credentials: <the key above>
"""
    if kind is SourceKind.pagerduty:
        return f"""In PagerDuty: Integrations > Generic Webhooks (v3) > New Webhook
  Webhook URL:  {url}
  Events:       incident.triggered and incident.resolved (others are accepted and ignored)
PagerDuty then shows the subscription's secret once: store it here with
  crisiscomms sources add {name} --kind pagerduty --secret-stdin   (or rotate, for a new one)
"""
    if kind is SourceKind.grafana:
        return f"""In Grafana: Alerting > Contact points > + Add contact point, Integration: Webhook
  URL:          {url}
  HTTP Method:  POST
  Optional Webhook settings > HMAC Signature (recommended: it protects against replays):
    Secret:            <the key above>
    Header:            {GRAFANA_SIGNATURE}
    Timestamp Header:  {GRAFANA_TIMESTAMP}
  or instead: Authorization Header, Scheme: Bearer, Credentials: <the key above>
"""
    return f"""POST {url} with a JSON body, signed the Standard Webhooks way (any of its libraries,
or crisiscomms.intake.signatures.sign_standard); with curl, KEY holding the key above:

  body='{{"playbook": "outage", ...}}'  # see docs/intake.md
  id="evt_$(date +%s%N)"; ts="$(date +%s)"
  sig="$(printf '%s' "$id.$ts.$body" | openssl dgst -sha256 -binary \\
        -mac HMAC -macopt "hexkey:$(printf '%s' "${{KEY#whsec_}}" | base64 -d | xxd -p -c 256)" \\
        | base64)"
  curl -sS {url} -H 'content-type: application/json' -H "webhook-id: $id" \\
       -H "webhook-timestamp: $ts" -H "webhook-signature: v1,$sig" --data "$body"
"""


@sources_app.command("add")
def sources_add(
    name: Annotated[str, typer.Argument(help="The source's name (a-z, 0-9, - and _): it is in "
                                             "the URL and the audit trail")],
    kind: Annotated[str, typer.Option("--kind", help=KINDS_HELP)],
    rate_per_s: Annotated[float | None, typer.Option(
        "--rate-per-s", help="Requests per second it may send (default: "
                             "CRISISCOMMS_INTAKE_RATE_PER_S)")] = None,
    secret_stdin: Annotated[bool, typer.Option(
        "--secret-stdin", help="Read the key from standard input (PagerDuty generates its "
                               "own) instead of generating one")] = False,
) -> None:
    """Add a sending system; prints its key once and what to paste into it."""
    from crisiscomms.intake.sources import SENDER_GENERATED, check_name, parse_kind

    store, base = _store()
    chosen = common.run_or_exit(lambda: parse_kind(kind))
    common.run_or_exit(lambda: check_name(name))
    url = source_url(base, chosen, name)
    if chosen in SENDER_GENERATED and not secret_stdin:
        _say(sender_setup(chosen, name, url))
    secret = _secret(secret_stdin)
    key = common.run_or_exit(lambda: store.add(name, chosen, secret=secret,
                                               rate_per_s=rate_per_s))
    _say(f"added {chosen.value} source {name} to {store.path}")
    if secret is None:
        _say(f"key (shown once; paste it into the sender now): {key}")
    else:
        _say("key: the one read from standard input (not shown)")
    _say(f"URL: {url}\n")
    _say(sender_setup(chosen, name, url))


@sources_app.command("rotate")
def sources_rotate(
    name: Annotated[str, typer.Argument(help="The source's name")],
    grace_hours: Annotated[float, typer.Option(
        "--grace-hours", help="How long the previous keys stay valid (0: not at all)")] = 24,
    secret_stdin: Annotated[bool, typer.Option(
        "--secret-stdin", help="Read the new key from standard input")] = False,
) -> None:
    """A new key for a source; the previous ones stay valid for the grace period."""
    store, base = _store()
    secret = _secret(secret_stdin)
    key = common.run_or_exit(lambda: store.rotate(name, secret=secret,
                                                  grace_hours=grace_hours))
    entry = next(e for e in store.entries() if e.name == name)
    if secret is None:
        _say(f"new key (shown once; paste it into the sender now): {key}")
    else:
        _say("new key: the one read from standard input (not shown)")
    previous = [k for k in entry.keys[1:] if k.expires_at is not None]
    if previous:
        until = max(k.expires_at for k in previous if k.expires_at is not None)
        _say(f"the previous key stays valid until {_when(until)}: switch the sender over "
             "before then")
    else:
        _say("the previous keys are no longer valid")
    url = source_url(base, entry.kind, name)
    _say(f"URL: {url}\n")
    _say(sender_setup(entry.kind, name, url))


@sources_app.command("list")
def sources_list() -> None:
    """The sources, their kinds, URLs and keys' dates (never a key)."""
    store, base = _store()
    entries = common.run_or_exit(store.entries)
    table = Table("name", "kind", "path", "rate/s", "keys", "problem", title=str(store.path))
    for entry in entries:
        keys = "\n".join(f"{k.key_id} " + (f"until {_when(k.expires_at)}" if k.expires_at
                                            else f"since {_when(k.created_at)}")
                         for k in entry.keys) or "none"
        rate = f"{entry.rate_per_s:g}" if entry.rate_per_s is not None else \
            f"{store.default_rate_per_s:g} (default)"
        path = source_url("", entry.kind, entry.name)
        table.add_row(entry.name, entry.kind.value, path, rate, keys, entry.problem or "")
    _say(f"senders post to {base}<path>")
    out.print(table)


@sources_app.command("remove")
def sources_remove(name: Annotated[str, typer.Argument(help="The source's name")]) -> None:
    """Remove a source: its keys stop verifying at once (its past events stay)."""
    store, _ = _store()
    common.run_or_exit(lambda: store.remove(name))
    _say(f"removed {name}")


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")
