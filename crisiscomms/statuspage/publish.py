"""Publishing a build atomically, and the lock that serialises publishers.

Layout of the status page directory::

    state.json              the committed state (written whole: temp file + os.replace)
    site -> builds/g00000007-1a2b3c4d   the live site: a symlink, switched atomically
    builds/                 generated sites; the live one and the one before are kept
    .lock                   serialises publishers across processes (flock)

A build is written into ``builds/.tmp-*``, renamed, and made live by replacing the ``site``
symlink with ``os.replace``: a reader sees the old site or the new one, never half of one. When
anything fails before the switch, the temporary build is removed and the previous site stays
live, untouched.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

from crisiscomms.channels.files import path_lock

BUILD_RE = re.compile(r"^g(\d{8})-[0-9a-f]{8}$")


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


def write_tree(root: Path, files: Mapping[str, str | bytes]) -> None:
    """Write every file under ``root`` (directories created as needed)."""
    made: set[Path] = set()
    for relative, content in files.items():
        path = root / relative
        parent = path.parent
        if parent not in made:
            parent.mkdir(parents=True, exist_ok=True)
            made.add(parent)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_bytes(content.encode("utf-8"))


def publish(output_dir: Path, generation: int, files: Mapping[str, str | bytes]) -> Path:
    """Write ``files`` as a new build and switch the live ``site`` to it; returns the build."""
    builds = output_dir / "builds"
    builds.mkdir(parents=True, exist_ok=True)
    name = f"g{generation:08d}-{uuid.uuid4().hex[:8]}"
    tmp = builds / f".tmp-{name}"
    final = builds / name
    try:
        tmp.mkdir()
        write_tree(tmp, files)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
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
    prune(builds, keep=name)
    return final


def prune(builds: Path, *, keep: str) -> None:
    """Drop old builds: keep the live one and the newest before it (readers may hold it)."""
    finished = sorted((p for p in builds.iterdir() if BUILD_RE.match(p.name)),
                      key=lambda p: p.name)
    older = [p for p in finished if p.name != keep]
    for path in older[:-1]:
        shutil.rmtree(path, ignore_errors=True)
    for path in builds.glob(".tmp-*"):
        shutil.rmtree(path, ignore_errors=True)
