"""Playbooks: loading and validating them, the notices a fact sheet must satisfy, and lint.
"""
