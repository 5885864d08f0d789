"""The audience: recipients, their CSV import and status page subscriptions (double opt-in).
"""
