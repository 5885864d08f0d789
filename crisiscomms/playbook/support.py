"""What support agents read beside the holding statement: the playbook's Q&A and the remedies
they may grant without asking, in one locale.

Both come from the playbook (reviewed like the templates, read-only on the dashboard). A
locale the playbook lacks falls back as messages do (``es-MX`` → ``es`` → the default locale),
and the guide says which locale it really is, so an agent knows when they read a fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from crisiscomms.core.locales import resolve_locale
from crisiscomms.playbook.loader import QA, Remedy, playbook_on_disk


@dataclass(frozen=True)
class SupportGuide:
    playbook: str
    requested_locale: str
    locale: str
    """The locale shown (``requested_locale`` or its fallback)."""
    qa: tuple[QA, ...]
    remedies: tuple[Remedy, ...]

    @property
    def is_fallback(self) -> bool:
        return self.locale != self.requested_locale


def support_guide(playbook_name: str, playbooks_dir: Path, locale: str) -> SupportGuide:
    """The Q&A and remedies of ``playbook_name`` in ``locale`` (or its fallback); raises
    PlaybookError when the playbook cannot be read."""
    book = playbook_on_disk(playbook_name, playbooks_dir)
    shown = resolve_locale(locale, book.locales, book.default_locale)
    qa = book.qa.get(shown) or book.qa.get(book.default_locale) or ()
    remedies = book.remedies.get(shown) or book.remedies.get(book.default_locale) or ()
    return SupportGuide(book.name, locale, shown, qa, remedies)


def playbook_locales(playbook_name: str, playbooks_dir: Path) -> tuple[str, ...]:
    """The playbook's locales, its default first."""
    book = playbook_on_disk(playbook_name, playbooks_dir)
    return (book.default_locale, *(loc for loc in book.locales if loc != book.default_locale))
