"""Listening: reactions from every channel, stored once, tied to what we said, triaged.

- ``models``: the tables (``Reaction``, ``ReactionCorrection``, ``ReactionReply``, ``Spike``);
- ``triage/``: language, sentiment and needs-a-human, offline (cue lists from the playbook, a
  lexicon, a small shipped model);
- ``sources/``: each receiver's logic (signature checks, parsing), framework-free; the HTTP app
  that serves them is ``crisiscomms.api.listen``;
- ``service``: storing reactions once and linking them to the message they answer;
- ``spikes`` and ``replies``: storms and pre-approved automatic replies.
"""
