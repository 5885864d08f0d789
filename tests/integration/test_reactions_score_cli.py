"""``crisiscomms reactions score`` as a user runs it: a real process, a pipe in, a pipe out.

Streaming is checked by behaviour, not by timing: the first batch's verdicts must come out
while stdin is still open (a command that read everything first would block forever here, so
the read has a timeout that only a broken command reaches)."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

BIN = Path(sys.executable).with_name("crisiscomms")


def _read_lines(lines: queue.Queue[str], count: int, timeout_s: float) -> list[str]:
    out: list[str] = []
    while len(out) < count:
        try:
            out.append(lines.get(timeout=timeout_s))
        except queue.Empty:
            raise AssertionError(f"only {len(out)} of {count} lines came out before stdin "
                                 "was closed: the command does not stream") from None
    return out


def test_score_streams_batches_in_order_and_stops_at_a_bad_line(tmp_path: Path) -> None:
    env = {**os.environ, "CRISISCOMMS_WORKSPACE": str(tmp_path)}
    proc = subprocess.Popen([str(BIN), "reactions", "score", "--batch", "100"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, bufsize=1, env=env)
    assert proc.stdin is not None
    texts = ["still waiting 3 hours", "thanks, all good", "mi cargador se incendió",
             "充電器が発火しました"]
    for i in range(250):
        proc.stdin.write(json.dumps({"id": i, "text": texts[i % 4]}) + "\n")
    proc.stdin.flush()
    lines: queue.Queue[str] = queue.Queue()
    stdout = proc.stdout
    assert stdout is not None
    threading.Thread(target=lambda: [lines.put(x) for x in stdout], daemon=True).start()
    first = _read_lines(lines, 200, timeout_s=120)  # two full batches, stdin still open
    assert [json.loads(x)["id"] for x in first] == list(range(200))
    proc.stdin.write('{"id": 250, "text": ["not", "a", "string"]}\n')
    proc.stdin.write(json.dumps({"id": 251, "text": "never scored"}) + "\n")
    proc.stdin.close()
    assert proc.wait(timeout=120) == 2
    assert proc.stderr is not None
    err = proc.stderr.read()
    rest = _read_lines(lines, 50, timeout_s=30)
    ids = [json.loads(x)["id"] for x in rest]
    assert ids == list(range(200, 250))  # the lines before the bad one, none after
    assert lines.empty()
    assert 'line 251: "text" must be a string' in err
    verdicts = [json.loads(x) for x in first[:4]]
    assert verdicts[0]["sentiment"] == "negative" and verdicts[0]["needs_human"]
    assert verdicts[2]["language"] == "es" and "safety: incendi" in verdicts[2]["reasons"]
    assert verdicts[3]["language"] == "ja" and verdicts[3]["reasons"] == ["safety: 発火"]
