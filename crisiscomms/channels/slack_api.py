"""Slack's Web API for the Slack channel's bot-token mode: ``chat.postMessage``,
``chat.update`` and ``conversations.history``/``conversations.replies`` (to find a message by
the ledger key it carries in its ``metadata``).

Slack answers HTTP 200 with ``{"ok": false, "error": "..."}`` for most refusals; ``ratelimited``
comes as 429 with ``Retry-After``. :func:`api_result` maps both onto a ``DeliveryResult``;
the token only ever travels in the ``Authorization`` header.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import SecretStr

from crisiscomms.channels.http_answers import post_json, retry_after_s
from crisiscomms.channels.http_pool import pooled_client
from crisiscomms.delivery.contract import DeliveryResult

SLACK_API = "https://slack.com/api"
METADATA_EVENT = "crisiscomms_message"
"""``metadata.event_type`` of our messages; ``event_payload.key`` is the ledger key."""
RETRY_ERRORS = frozenset({"ratelimited", "internal_error", "fatal_error",
                          "service_unavailable", "request_timeout"})


@dataclass(frozen=True)
class SlackWebAPI:
    token: SecretStr
    channel: str
    base_url: str = SLACK_API
    timeout_s: float = 10.0

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token.get_secret_value()}"}

    def call(self, method: str, body: dict[str, Any]) -> tuple[DeliveryResult, dict[str, Any]]:
        """POST one Web API method; the result and Slack's answer (empty when none came)."""
        result, response = post_json(
            pooled_client(self.timeout_s), "Slack", f"{self.base_url}/{method}",
            content=orjson.dumps(body), headers=self._headers())
        if response is None or result.outcome.value != "sent":
            return result, {}
        try:
            answer = response.json()
        except ValueError:
            return DeliveryResult.lost(f"Slack {method} answered with a body that is not "
                                       "JSON"), {}
        if not isinstance(answer, dict) or not answer.get("ok"):
            error = str(answer.get("error") if isinstance(answer, dict) else "") or "unknown"
            reason = f"Slack {method} refused: {error}"
            if error in RETRY_ERRORS:
                return DeliveryResult.retry(reason, retry_after_s(response.headers)), {}
            return DeliveryResult.permanent(reason), {}
        return result, answer

    def find(self, key: str, *, thread_ts: str | None) -> str | None:
        """The ``ts`` of our message carrying ledger key ``key`` (in ``thread_ts``'s thread, or
        among the channel's recent messages); None when there is none. Raises
        ``httpx.HTTPError`` or ``RuntimeError`` when Slack cannot be asked."""
        method = "conversations.replies" if thread_ts else "conversations.history"
        params: dict[str, str] = {"channel": self.channel, "include_all_metadata": "true",
                                  "limit": "200"}
        if thread_ts:
            params["ts"] = thread_ts
        response = pooled_client(self.timeout_s).get(f"{self.base_url}/{method}",
                                                     params=params, headers=self._headers())
        answer = response.json() if response.status_code == 200 else {}
        if not isinstance(answer, dict) or not answer.get("ok"):
            raise RuntimeError(f"Slack {method} answered {response.status_code}: "
                               f"{answer.get('error') if isinstance(answer, dict) else ''}")
        for message in answer.get("messages") or []:
            metadata = message.get("metadata") or {}
            if (metadata.get("event_type") == METADATA_EVENT
                    and (metadata.get("event_payload") or {}).get("key") == key):
                return str(message.get("ts"))
        return None
