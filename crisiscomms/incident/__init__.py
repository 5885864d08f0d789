"""Incidents: the tables, the fact sheet, the lifecycle service (trigger, approve, plan)
and the read views the dashboard and CLI show.
"""
