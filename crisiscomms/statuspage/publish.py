"""Publishing a build atomically, and the lock that serialises publishers.

Layout of the status page directory::

    state.json              the committed state (written whole: temp file + os.replace)
    site -> builds/g00000007-1a2b3c4d   the live site: a symlink, switched atomically
    builds/                 generated sites; the live one and the one before are kept
    .pages/                 the page fingerprints of the kept builds (unchanged pages of the
                            next build are hard-linked from the live one)
    .lock                   serialises publishers across processes (flock)

A build is written into ``builds/.tmp-*``, renamed, and made live by replacing the ``site``
symlink with ``os.replace``: a reader sees the old site or the new one, never half of one. When
anything fails before the switch, the temporary build is removed and the previous site stays
live, untouched.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from crisiscomms.core.files import path_lock

BUILD_RE = re.compile(r"^g(\d{8})-[0-9a-f]{8}$")
MANIFESTS = ".pages"
"""``.pages/<build>.json`` for each kept build (not in the served site): the fingerprint of each
page's inputs, so the next build links the pages that did not change."""


@dataclass(frozen=True)
class Linked:
    """A file of the new build that is the same as ``source`` in the live build: hard-linked
    (copied where links are not possible) instead of rendered and written again."""

    source: Path


Content = str | bytes | Linked


class SiteFiles(dict[str, Content]):
    """Every file of one build by relative path, with the fingerprints of its pages."""

    def __init__(self) -> None:
        super().__init__()
        self.manifest: dict[str, str] = {}


@dataclass(frozen=True)
class Previous:
    """The live build and the fingerprints of its pages."""

    root: Path
    manifest: Mapping[str, str]


def live_pages(output_dir: Path) -> Previous | None:
    """The live build with its page fingerprints; None without a site or a manifest."""
    try:
        name = Path(os.readlink(output_dir / "site")).name
    except OSError:
        return None
    root = output_dir / "builds" / name
    try:
        manifest = json.loads((output_dir / MANIFESTS / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None
    return Previous(root, manifest) if isinstance(manifest, dict) else None


@contextlib.contextmanager
def locked(output_dir: Path) -> Iterator[None]:
    """Exclusive: one publisher per directory, across threads and processes."""
    with path_lock(output_dir):
        output_dir.mkdir(parents=True, exist_ok=True)
        with open(output_dir / ".lock", "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def live_generation(output_dir: Path) -> int:
    """The state generation the live site shows (0 when there is no site yet)."""
    try:
        target = os.readlink(output_dir / "site")
    except OSError:
        return 0
    match = BUILD_RE.match(Path(target).name)
    return int(match.group(1)) if match else 0


def write_tree(root: Path, files: Mapping[str, Content]) -> None:
    """Write every file under ``root`` (directories created as needed)."""
    made: set[Path] = set()
    for relative, content in files.items():
        path = root / relative
        parent = path.parent
        if parent not in made:
            parent.mkdir(parents=True, exist_ok=True)
            made.add(parent)
        if isinstance(content, Linked):
            try:
                os.link(content.source, path)
            except OSError:  # another file system, or no hard links: copy it
                shutil.copyfile(content.source, path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_bytes(content.encode("utf-8"))


def publish(output_dir: Path, generation: int, files: Mapping[str, Content]) -> Path:
    """Write ``files`` as a new build and switch the live ``site`` to it; returns the build.
    The page fingerprints of a :class:`SiteFiles` are kept beside the build."""
    builds = output_dir / "builds"
    builds.mkdir(parents=True, exist_ok=True)
    name = f"g{generation:08d}-{uuid.uuid4().hex[:8]}"
    tmp = builds / f".tmp-{name}"
    final = builds / name
    try:
        tmp.mkdir()
        write_tree(tmp, files)
        tmp.rename(final)
        manifest = getattr(files, "manifest", None)
        if manifest:
            (output_dir / MANIFESTS).mkdir(exist_ok=True)
            (output_dir / MANIFESTS / f"{name}.json").write_text(json.dumps(manifest),
                                                                 encoding="utf-8")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)
        raise
    link = output_dir / f".site-{name}.lnk"
    try:
        os.symlink(Path("builds") / name, link)
        os.replace(link, output_dir / "site")
    except BaseException:
        with contextlib.suppress(OSError):
            link.unlink()
        shutil.rmtree(final, ignore_errors=True)
        raise
    prune(builds, keep=name, manifests=output_dir / MANIFESTS)
    return final


def prune(builds: Path, *, keep: str, manifests: Path | None = None) -> None:
    """Drop old builds: keep the live one and the newest before it (readers may hold it)."""
    finished = sorted((p for p in builds.iterdir() if BUILD_RE.match(p.name)),
                      key=lambda p: p.name)
    older = [p for p in finished if p.name != keep]
    for path in older[:-1]:
        shutil.rmtree(path, ignore_errors=True)
    if manifests is not None and manifests.is_dir():
        kept = {keep, *(p.name for p in older[-1:])}
        for manifest in manifests.glob("*.json"):
            if manifest.stem not in kept:
                manifest.unlink(missing_ok=True)
    for path in builds.glob(".tmp-*"):
        shutil.rmtree(path, ignore_errors=True)
