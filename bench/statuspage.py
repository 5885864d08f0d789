"""Rebuild + publish the status page with 100 components and 1,000 past incidents in the
playbooks' five locales, one active incident and a scheduled maintenance, beside the time to
copy the same files (shutil.copytree of the built site) in the same run.

    uv run python bench/statuspage.py [--components 100] [--incidents 1000] [--repeat 5]
                                      [--locales en,es,fr,de,ja]

Prints the median of ``--repeat`` runs of each and their ratios (aim: under 3x the copy, under
1 s):

- ``cold rebuild + publish``: every JSON document, HTML page and feed of every locale
  generated, written to a new build directory and switched live with the symlink swap, with
  nothing reused from the live build;
- ``full update``: what one incident update costs (``StatusPage.change``): take the lock, load
  ``state.json``, add the update, build (the pages of incidents that did not change are
  hard-linked from the live build), save the state, publish.
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


def make_state(components: int, incidents: int,
               locales: tuple[str, ...] = ("en",)) -> dict[str, Any]:
    state = model.new_state(locales[0])
    names = [f"Group {c // 10} / Service {c}" if c % 3 else f"Service {c}"
             for c in range(components)]
    model.ensure_components(state, names, model.iso(NOW - timedelta(days=400)))
    severities = ("minor", "major", "critical")
    for n in range(incidents):
        start = NOW - timedelta(hours=6 * (incidents - n) + 1)
        affected = [names[(n * 7 + k) % components] for k in range(1 + n % 3)]
        steps = ("investigating", "identified", "resolved")
        for k, status in enumerate(steps):
            for locale in locales:
                model.add_incident_update(
                    state, key=f"i{n}-{k}-{locale}", ref=f"INC-{n:05d}",
                    name=f"Errors on {affected[0]}", status=status,
                    severity=severities[n % 3], components=affected,
                    body=f"[{locale}] Update {k} of incident {n}: what we know, what we do, "
                         "what you can do.",
                    locale=locale, stage=status, now=start + timedelta(minutes=20 * k),
                    started_at=start, event=f"INC-{n:05d}:{k}")
    for locale in locales:  # one incident open now
        model.add_incident_update(
            state, key=f"active-0-{locale}", ref="ACTIVE", name="Dashboard slow",
            status="investigating", severity="minor", components=[names[0], names[1]],
            body=f"[{locale}] We are looking into slow dashboards.", locale=locale,
            stage="acknowledge", now=NOW - timedelta(minutes=30),
            started_at=NOW - timedelta(minutes=35), event="ACTIVE:0")
    model.schedule_maintenance(state, name="Database upgrade", components=[names[2]],
                               start=NOW + timedelta(days=2), end=NOW + timedelta(days=2, hours=2),
                               now=NOW - timedelta(days=1))
    state["generation"] = 1
    return state


def update(n: int, locales: tuple[str, ...]) -> Any:
    """One more update of the open incident (the change a publish of one stage makes)."""
    status = ("identified", "monitoring")[n % 2]

    def change(state: dict[str, Any]) -> None:
        for locale in locales:
            model.add_incident_update(
                state, key=f"active-{n + 1}-{locale}", ref="ACTIVE", name="Dashboard slow",
                status=status, severity="minor", components=["Service 0", "Group 0 / Service 1"],
                body=f"[{locale}] Update {n + 1}.", locale=locale, stage=f"update-{n}",
                now=NOW - timedelta(minutes=29 - n), started_at=NOW - timedelta(minutes=35),
                event=f"ACTIVE:{n + 1}")
    return change


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--components", type=int, default=100)
    parser.add_argument("--incidents", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--locales", default="en,es,fr,de,ja",
                        help="comma-separated, the default first (the playbooks' five)")
    args = parser.parse_args()
    locales = tuple(x.strip() for x in args.locales.split(",") if x.strip())
    state = make_state(args.components, args.incidents, locales)
    with tempfile.TemporaryDirectory(prefix="bench-statuspage-") as tmp:
        root = Path(tmp)
        page = StatusPage(root / "page", page_name="Bench Status",
                          page_url="https://status.example.com", default_locale=locales[0],
                          clock=lambda: NOW)
        page.commit(state)  # state.json on disk, as a running page has it
        page.publish(state)  # warm-up: templates compiled, catalogues loaded
        publish_s, update_s, copy_s = [], [], []
        for n in range(args.repeat):
            for manifest in (root / "page" / ".pages").glob("*.json"):
                manifest.unlink()  # cold: nothing to reuse, every page rendered and written
            started = time.perf_counter()
            page.publish(state)
            publish_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            page.change(update(n, locales))
            update_s.append(time.perf_counter() - started)
            site = page.site_path.resolve()
            started = time.perf_counter()
            shutil.copytree(site, root / f"copy{n}")
            copy_s.append(time.perf_counter() - started)
            shutil.rmtree(root / f"copy{n}")
        files = sum(1 for p in page.site_path.resolve().rglob("*") if p.is_file())
        size = sum(p.stat().st_size for p in page.site_path.resolve().rglob("*") if p.is_file())
        state_mb = page.state_path.stat().st_size / 1e6
    pub, upd = statistics.median(publish_s), statistics.median(update_s)
    cp = statistics.median(copy_s)
    print(f"status page: {args.components} components, {args.incidents} past incidents + 1 "
          f"open + 1 maintenance, locales {','.join(locales)}: {files} files, "
          f"{size / 1e6:.1f} MB (state.json {state_mb:.1f} MB); median of {args.repeat}")
    print(f"cold rebuild + publish:                   {pub * 1000:8.1f} ms  "
          f"{pub / cp:.2f}x the copy")
    print(f"full update (load, change, build, save, publish): {upd * 1000:8.1f} ms  "
          f"{upd / cp:.2f}x the copy")
    print(f"copytree of site:                         {cp * 1000:8.1f} ms")
    print("aim: under 3x the copy and under 1 s")


if __name__ == "__main__":
    main()
