"""A benchmark killed with SIGTERM unwinds like Ctrl-C (`bench.processes.exit_on_sigterm`): its
`with` blocks run, so the servers it started stop and the databases it created are dropped.
Checked on a child process that, like a bench run, holds a resource in a `with` block."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.support.paths import ROOT

CHILD = """
import contextlib, pathlib, sys, time
from bench.processes import exit_on_sigterm

marker = pathlib.Path(sys.argv[1])

@contextlib.contextmanager
def resource():
    try:
        yield
    finally:
        marker.write_text("released")

exit_on_sigterm()
with resource():
    print("ready", flush=True)
    time.sleep(60)
"""


def _run_child(tmp_path: Path, arm: bool) -> tuple[int, Path]:
    marker = tmp_path / "marker"
    code = CHILD if arm else CHILD.replace("exit_on_sigterm()\n", "")
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(marker)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    child.send_signal(signal.SIGTERM)
    return child.wait(timeout=30), marker


def test_sigterm_runs_the_cleanup_and_exits_143(tmp_path: Path) -> None:
    code, marker = _run_child(tmp_path, arm=True)
    assert code == 143
    assert marker.read_text() == "released"


def test_without_it_sigterm_skips_the_cleanup(tmp_path: Path) -> None:
    """The control: what happened before (and still happens in code that does not arm it)."""
    code, marker = _run_child(tmp_path, arm=False)
    assert code == -signal.SIGTERM
    assert not marker.exists()
