"""The channel registry: every channel class declares what the engine needs, once, and nothing
outside ``crisiscomms/channels/`` lists channels by name (table-driven over every channel)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from repo_paths import PROJECT_ROOT

import crisiscomms
from crisiscomms.channels.registry import (
    build_channels,
    channel_class,
    channel_classes,
    channel_names,
    configured_rates,
    in_lane,
)
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.contract import CUSTOMER_LIST, Channel, ChannelLimits, Lane

NAMES = channel_names()
PACKAGE = Path(crisiscomms.__file__).parent

NEEDS_CREDENTIALS = {"status_page": False, "x": True, "support": False, "press": True,
                     "email": True, "mastodon": True, "bluesky": True, "slack": True,
                     "teams": True, "webhook": True, "sms": True}
"""Whether ``from_settings`` needs credentials: every registered channel must be here."""

CREDENTIALS = ("sendgrid_api_key", "x_bearer_token", "x_consumer_key", "x_consumer_secret",
               "x_access_token", "x_access_token_secret", "mastodon_access_token",
               "bluesky_handle", "bluesky_app_password", "slack_webhook_url",
               "teams_webhook_url", "webhook_url", "webhook_secret", "twilio_account_sid",
               "twilio_auth_token", "sms_from")


def settings(tmp_path: Path, *, credentials: bool) -> Settings:
    given = {"sendgrid_api_key": "SG.registry-unit-key", "x_bearer_token": "x-registry-unit",
             "mastodon_access_token": "mastodon-registry-unit",
             "bluesky_handle": "status.example.com", "bluesky_app_password": "abcd-efgh-ijkl",
             "slack_webhook_url": "http://127.0.0.1:9/services/T0/B0/registry",
             "teams_webhook_url": "http://127.0.0.1:9/webhookb2/registry",
             "webhook_url": "http://127.0.0.1:9/hooks/registry",
             "webhook_secret": "whsec_" + "QUJD" * 8,
             "twilio_account_sid": "AC" + "0" * 32, "twilio_auth_token": "registry-unit",
             "sms_from": "+15005550006"}
    secrets = {name: given.get(name) if credentials else None for name in CREDENTIALS}
    return Settings(_env_file=None, data_dir=tmp_path / "data",  # type: ignore[call-arg]
                    status_page_dir=tmp_path / "status", playbooks_dir=PROJECT_ROOT / "playbooks",
                    sendgrid_base_url="http://127.0.0.1:9", x_base_url="http://127.0.0.1:9",
                    subscriptions_url=None, **secrets)


def test_every_channel_has_a_credentials_row() -> None:
    assert set(NEEDS_CREDENTIALS) == set(NAMES)


def test_registry_is_ordered_by_declared_order_and_lanes() -> None:
    classes = list(channel_classes().values())
    orders = [cls.order for cls in classes]
    assert orders == sorted(orders) and len(set(orders)) == len(orders)
    assert [cls.name for cls in classes] == list(NAMES)
    rank = {Lane.first: 0, Lane.parallel: 1, Lane.fan_out: 2}
    lanes = [rank[cls.lane] for cls in classes]
    assert lanes == sorted(lanes), "publication order and lanes disagree"
    assert in_lane(Lane.first) == (NAMES[0],) == ("status_page",)  # every message links to it
    assert sorted(n for lane in Lane for n in in_lane(lane)) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_declared_attributes(name: str) -> None:
    cls = channel_class(name)
    assert cls.name == name and name.isidentifier()
    assert isinstance(cls.order, int) and not isinstance(cls.order, bool)
    assert isinstance(cls.lane, Lane)
    assert cls.recipients is None or (isinstance(cls.recipients, str) and cls.recipients)
    for flag in (cls.personal, cls.default_enabled, cls.threaded):
        assert isinstance(flag, bool)
    assert isinstance(cls.limits, ChannelLimits)
    assert isinstance(cls.parts, tuple) and "text" in cls.parts
    if cls.personal or cls.limits.batch_size > 1:
        assert cls.recipients is not None, "a personal or batched channel addresses recipients"
    if cls.recipients is None:
        assert cls.limits.batch_size == 1 and not cls.personal
    if cls.lane is Lane.fan_out:
        assert cls.recipients is not None, "only an audience fans out"
    if cls.rate_setting is not None:
        assert cls.rate_setting in Settings.model_fields
    assert callable(cls.from_settings)
    for own in ("name", "order"):  # defaults come from BaseChannel; these never do
        assert own in vars(cls), f"{own} declared on the class itself, not inherited"


def test_audiences_and_defaults() -> None:
    """Email to the customer list, the press release to the press list and only when a stage
    names it, broadcasts to nobody; the default set is what playbooks get without a list."""
    audiences = {n: c.recipients for n, c in channel_classes().items()}
    assert audiences == {"status_page": None, "x": None, "support": None, "press": "press",
                         "email": CUSTOMER_LIST, "mastodon": None, "bluesky": None,
                         "slack": None, "teams": None, "webhook": None, "sms": CUSTOMER_LIST}
    assert {n: c.address for n, c in channel_classes().items() if c.recipients} == {
        "press": "email", "email": "email", "sms": "phone"}
    assert [n for n, c in channel_classes().items() if c.default_enabled] == [
        "status_page", "x", "support", "email"]  # the issue 15 channels only where named
    assert [n for n, c in channel_classes().items() if c.threaded] == [
        "x", "mastodon", "bluesky", "slack"]


@pytest.mark.parametrize("name", NAMES)
def test_from_settings_needs_credentials_only_where_declared(name: str, tmp_path: Path) -> None:
    cls = channel_class(name)
    without = cls.from_settings(settings(tmp_path, credentials=False))
    assert (without is None) == NEEDS_CREDENTIALS[name]
    with_credentials = cls.from_settings(settings(tmp_path, credentials=True))
    assert type(with_credentials) is cls
    assert isinstance(with_credentials, Channel)
    assert not (tmp_path / "status").exists() and not (tmp_path / "data").exists(), \
        "constructing a channel writes nothing"


def test_build_channels_leaves_out_what_lacks_credentials(tmp_path: Path) -> None:
    assert list(build_channels(settings(tmp_path, credentials=True))) == list(NAMES)
    assert list(build_channels(settings(tmp_path, credentials=False))) == [
        n for n in NAMES if not NEEDS_CREDENTIALS[n]]


def test_rates_come_from_the_declared_settings(tmp_path: Path) -> None:
    from crisiscomms.flows.deploy import default_rates, rate_limit_names

    s = settings(tmp_path, credentials=False)
    rated = {n: c.rate_setting for n, c in channel_classes().items() if c.rate_setting}
    assert configured_rates(s) == {n: getattr(s, field) for n, field in rated.items()}
    assert set(rate_limit_names()) == set(default_rates()) == set(rated)
    assert rate_limit_names()["x"] == "crisiscomms-rate-x"


def test_unknown_channel_names_the_known_ones() -> None:
    with pytest.raises(LookupError, match="unknown channel 'fax'; channels: status_page, x"):
        channel_class("fax")


def test_importing_the_registry_or_the_domain_loads_no_channel() -> None:
    """The registry loads channel modules (and tweepy, sendgrid) only when asked; the domain
    never imports ``crisiscomms.channels`` at all (it receives the registry)."""
    code = (
        "import sys\n"
        "import crisiscomms.channels, crisiscomms.channels.registry\n"
        "import crisiscomms.playbook.loader, crisiscomms.playbook.lint\n"
        "import crisiscomms.delivery.ledger, crisiscomms.delivery.sender\n"
        "import crisiscomms.incident.service, crisiscomms.incident.views\n"
        "import crisiscomms.render.environment\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('tweepy', 'sendgrid')\n"
        "                or (m.startswith('crisiscomms.channels.')\n"
        "                    and m != 'crisiscomms.channels.registry'))\n"
        "print(loaded)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=120)
    assert done.stdout.strip() == "[]"


# -- nobody else lists channels --------------------------------------------------------------


def _constants(nodes: list[ast.expr | None], names: frozenset[str]) -> list[str]:
    return [n.value for n in nodes
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in names]


def channel_literals(source: str, names: frozenset[str]) -> list[tuple[int, str]]:
    """Hand-written channel lists and channel branches: a tuple, list, set, dict's keys or
    call's arguments holding two or more channel names; a comparison of something named
    ``channel`` with a channel name; a ``channel=`` keyword given a channel name."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        group: list[ast.expr | None] | None = None
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            group = list(node.elts)
        elif isinstance(node, ast.Dict):
            group = list(node.keys)
        elif isinstance(node, ast.Call):
            group = list(node.args)
        if group is not None and len(_constants(group, names)) >= 2:
            found.append((node.lineno, ast.unparse(node)))
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            others = [ast.unparse(s) for s in sides if not isinstance(s, ast.Constant)]
            if _constants(list(sides), names) and any("channel" in o.lower() for o in others):
                found.append((node.lineno, ast.unparse(node)))
        if (isinstance(node, ast.keyword) and node.arg == "channel"
                and _constants([node.value], names)):
            found.append((node.value.lineno, ast.unparse(node)))
    return found


def test_the_scan_sees_the_patterns_it_forbids() -> None:
    names = frozenset(NAMES)
    bad = ('ORDER = ("status_page", "x", "support")\n'
           'LISTS = {"press": "press", "email": "customers"}\n'
           'ok = message.channel == "x"\n'
           'if channel in ("email", "press"): pass\n'
           'q = select(M).where(col(M.channel) == "support")\n'
           'Table("incident", "email sent/failed", "x", "status_page")\n'
           'RenderedMessage(channel="email")\n')
    assert sorted(line for line, _ in channel_literals(bad, names)) == [1, 2, 3, 4, 5, 6, 7]
    fine = ('FIELDS = ("email", "name", "locale")\n'
            'name = cls.name\n'
            'stats = {"email": 1, "plan": 2}\n'
            'point = {"x": 0, "y": 0}\n')
    assert channel_literals(fine, names) == []


def test_no_module_outside_the_channels_package_lists_channels() -> None:
    names = frozenset(NAMES)
    files = [p for p in sorted(PACKAGE.rglob("*.py")) if (PACKAGE / "channels") not in p.parents]
    files += sorted((PROJECT_ROOT / "flows").glob("*.py"))
    assert len(files) > 50
    offences = [f"{path.relative_to(PROJECT_ROOT)}:{line}: {text}"
                for path in files
                for line, text in channel_literals(path.read_text(encoding="utf-8"), names)]
    assert offences == [], "read the channel registry instead:\n" + "\n".join(offences)


def test_only_subscribers_get_the_subscriptions_unsubscribe_link(tmp_path: Path) -> None:
    """Email links each subscriber's own unsubscribe page; the press release, sent to
    journalists who never subscribed, keeps the ``mailto:`` unsubscribe."""
    configured = settings(tmp_path, credentials=True).model_copy(
        update={"subscriptions_url": "https://status-api.example.com"})
    email = channel_class("email").from_settings(configured)
    press = channel_class("press").from_settings(configured)
    assert getattr(email, "unsubscribe_url", None) == \
        "https://status-api.example.com/v1/unsubscribe/"
    assert press is not None and getattr(press, "unsubscribe_url", "set") is None
