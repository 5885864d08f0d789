"""The receivers' logic, one module per source; HTTP lives in ``crisiscomms/api/listen.py``.

- :mod:`.payload`: :class:`~.payload.PayloadError` (a 400 naming the field) and JSON helpers;
- :mod:`.sendgrid_events`: SendGrid Event Webhook batches → ``DeliveryEvent`` rows, ledger
  confirmation (``confirm_by_key``), suppression of bounced/complaining recipients;
- :mod:`.inbound_parse`: SendGrid Inbound Parse replies → reactions linked to the batch;
- :mod:`.tickets`: Zendesk- and Freshdesk-shaped ticket webhooks → reactions;
- :mod:`.csat`: signed one-click rating links and the ratings they record;
- :mod:`.x_mentions`: mentions and replies on X, polled from stored cursors (:mod:`.cursors`)
  through :mod:`.x_client` (tweepy v2, rate limits honoured).

Each turns what it received into ``reactions.service.ReactionIn`` values (or delivery events)
and stores a whole request in a few statements.
"""
