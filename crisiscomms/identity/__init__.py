"""Identity: who did what (the audit trail).
"""
