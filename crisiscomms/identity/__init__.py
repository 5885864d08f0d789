"""Identity: who is acting, and who did what.

- :mod:`.identities`: :class:`~.identities.Identity` (an authenticated id, a display name, how it
  was authenticated) and the OS account of the CLI;
- :mod:`.keys`: approvers' Ed25519 signing keys (private in the user's own folder, public in
  ``templates/_approvers/``), :func:`~.keys.current_identity` for the CLI;
- :mod:`.models`: the append-only audit trail (``AuditEvent``).
"""
