"""``crisiscomms serve`` as a user runs it: a real process serving the workspace's live status
page with the security headers (the form may post to the configured subscriptions app) and
nothing outside the build."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from repo_paths import PROJECT_ROOT

from crisiscomms.statuspage.page import StatusPage

pytestmark = pytest.mark.integration


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    data = tmp_path / "data"
    page = StatusPage(data / "status_page", page_name="Example Status",
                      page_url="https://status.example.com",
                      clock=lambda: datetime(2026, 3, 1, tzinfo=UTC))
    page.rebuild()
    (tmp_path / "token.txt").write_text("SG.serve-secret")
    (page.site_path.resolve() / "token.txt").symlink_to(tmp_path / "token.txt")
    env = {**os.environ, "CRISISCOMMS_DATA_DIR": str(data),
           "CRISISCOMMS_SUBSCRIPTIONS_URL": "https://subscribe.example.org/app"}
    env.pop("CRISISCOMMS_STATUS_PAGE_DIR", None)
    command = [str(Path(sys.executable).parent / "crisiscomms"), "serve", "--port", "0"]
    proc = subprocess.Popen(command,
                            cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("status page: http://127.0.0.1:"), line
        yield line.split("status page: ", 1)[1].strip().rstrip("/")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serve_sends_the_headers_and_keeps_to_the_site(served: str) -> None:
    answer = httpx.get(served + "/")
    assert answer.status_code == 200
    csp = answer.headers["content-security-policy"]
    assert "form-action 'self' https://subscribe.example.org;" in csp
    assert "frame-ancestors 'none'" in csp
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "strict-origin-when-cross-origin"
    leak = httpx.get(served + "/token.txt")
    assert leak.status_code == 404 and "serve-secret" not in leak.text
