"""Prefect flows: thin orchestration over crisiscomms engine functions."""
