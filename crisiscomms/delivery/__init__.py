"""Delivery: the channel contract, the ledger (outbox), the sender with its rate limits and
retries, and reconciliation after a crash.
"""
