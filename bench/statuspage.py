"""Rebuild + publish the status page with 100 components and 1,000 past incidents, beside the
time to copy the same files (shutil.copytree of the built site) in the same run.

    uv run python bench/statuspage.py [--components 100] [--incidents 1000] [--repeat 5]

Prints the median of ``--repeat`` runs of each and their ratio (aim: under 3x the copy, under
1 s). The publish is the real one: every JSON document, HTML page and feed generated, written
to a new build directory and switched live with the symlink swap.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from crisiscomms.statuspage import model
from crisiscomms.statuspage.page import StatusPage

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def make_state(components: int, incidents: int) -> dict[str, Any]:
    state = model.new_state("en")
    names = [f"Group {c // 10} / Service {c}" if c % 3 else f"Service {c}"
             for c in range(components)]
    model.ensure_components(state, names, model.iso(NOW - timedelta(days=400)))
    severities = ("minor", "major", "critical")
    for n in range(incidents):
        start = NOW - timedelta(hours=6 * (incidents - n) + 1)
        affected = [names[(n * 7 + k) % components] for k in range(1 + n % 3)]
        steps = ("investigating", "identified", "resolved")
        for k, status in enumerate(steps):
            model.add_incident_update(
                state, key=f"i{n}-{k}", ref=f"INC-{n:05d}", name=f"Errors on {affected[0]}",
                status=status, severity=severities[n % 3], components=affected,
                body=f"Update {k} of incident {n}: what we know, what we do, what you can do.",
                locale="en", stage=status, now=start + timedelta(minutes=20 * k),
                started_at=start)
    state["generation"] = 1
    return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--components", type=int, default=100)
    parser.add_argument("--incidents", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    state = make_state(args.components, args.incidents)
    with tempfile.TemporaryDirectory(prefix="bench-statuspage-") as tmp:
        root = Path(tmp)
        page = StatusPage(root / "page", page_name="Bench Status",
                          page_url="https://status.example.com", clock=lambda: NOW)
        page.publish(state)  # warm-up: templates compiled, catalogues loaded
        publish_s, copy_s = [], []
        for n in range(args.repeat):
            started = time.perf_counter()
            page.publish(state)
            publish_s.append(time.perf_counter() - started)
            site = page.site_path.resolve()
            started = time.perf_counter()
            shutil.copytree(site, root / f"copy{n}")
            copy_s.append(time.perf_counter() - started)
            shutil.rmtree(root / f"copy{n}")
        files = sum(1 for p in page.site_path.resolve().rglob("*") if p.is_file())
        size = sum(p.stat().st_size for p in page.site_path.resolve().rglob("*") if p.is_file())
    pub, cp = statistics.median(publish_s), statistics.median(copy_s)
    print(f"status page: {args.components} components, {args.incidents} past incidents, "
          f"{files} files, {size / 1e6:.1f} MB; median of {args.repeat}")
    print(f"rebuild + publish: {pub * 1000:8.1f} ms")
    print(f"copytree of site:  {cp * 1000:8.1f} ms")
    print(f"ratio: {pub / cp:.2f}x the copy (aim < 3x, < 1 s)")


if __name__ == "__main__":
    main()
