"""Rendering: the sandboxed Jinja2 environment, filters, channel limits, X text weight and
the template approvals lock.
"""
