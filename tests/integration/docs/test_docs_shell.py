"""Every shell example of README.md and docs/*.md runs as written, in page order, against a real
`rocketd serve` on the embedded PostgreSQL, with the Debian 12 tools the pages use (bash, curl,
jq 1.6: installed with apt when missing). Each page starts from a fresh app `shop` (README.md,
which creates it itself, from none) and the seeded platform admin.

"Runs" means: bash with `set -euo pipefail` gets through every block (a jq filter that no longer
fits the answer, a variable a block forgets to set, a command or file that does not exist all
stop it), and no answer is a 500 or a route that does not exist. The exact answers are asserted
by test_docs_examples.py for the pages it replays. Blocks that cannot run here carry an
exemption marker with its reason (tests.support.doc_blocks); nothing else is skipped.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import psycopg
import pytest

from rocketd.db.embedded import EmbeddedPostgres
from tests.support.doc_blocks import Block, script, setup_blocks, shell_blocks
from tests.support.orphans import die_with_test_process, owned_tempdir, remove_owned_dir
from tests.support.paths import ROOT
from tests.support.processes import free_port

pytestmark = pytest.mark.e2e

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = {
    str(page.relative_to(ROOT)): blocks for page in PAGES if (blocks := shell_blocks(page, ROOT))
}
# The sections of other pages a page starts from (its `docs-test: setup` markers).
SETUP = {page: setup_blocks(ROOT / page, ROOT) for page in RUN}
# What the pages reach for, linked into each page's working directory.
SHARED_PATHS = (".venv", "examples", "bench", "etc", "scripts")
# The starting point the pages name: an admin token of `shop` in $TOKEN (auth.md and permissions.md
# call it $ATOKEN) and a platform token in $PTOKEN, as platform-and-auth.md's quick start leaves.
PRELUDE = """
login() {
  curl -s -X POST "localhost:$DOCS_TEST_PORT/api/$1/auth/login" -H 'Content-Type: application/json' \\
    -d "{\\"email\\":\\"$2\\",\\"password\\":\\"changeme\\"}" | jq -r .data.access_token
}
PTOKEN=$(login _platform platform@localhost)
TOKEN=$(login shop admin@localhost)
ATOKEN=$TOKEN
unset -f login
"""
FORBIDDEN_OUTPUT = ('"INTERNAL_ERROR"', "Route not found", "command not found")


def ensure_jq() -> None:
    if shutil.which("jq") is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "jq"], check=True, timeout=300)


def clean_env(port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROCKET_")}
    env.pop("DATABASE_URL", None)
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    env["ROCKET_AUTH_BCRYPT_COST"] = "4"
    env["ROCKET_LOG_LEVEL"] = "warning"
    env["DOCS_TEST_PORT"] = str(port)
    return env


@dataclass
class DocsServer:
    port: int
    metrics_port: int  # observability.md's metrics listener (metrics.listen)
    work: Path  # holds ./data, as a reader's checkout does
    env: dict[str, str]

    def cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rocketd", *args],
            cwd=self.work,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"rocketd exited: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("rocketd did not become ready")


@pytest.fixture(scope="module")
def docs_server() -> Iterator[DocsServer]:
    ensure_jq()
    # Not under pytest's tmp_path: as root, PostgreSQL runs as an unprivileged user that must be
    # able to enter the data dir.
    work = owned_tempdir("docs")
    port, metrics_port = free_port(), free_port()
    env = clean_env(port)
    server_env = {
        **env,
        "ROCKET_SERVER_PORT": str(port),
        "ROCKET_LOG_FORMAT": "json",
        # One process, as the pages' outputs assume (one worker's counters in /metrics).
        "ROCKET_SERVER_WORKERS": "1",
        "ROCKET_METRICS_ENABLED": "true",
        "ROCKET_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
    }
    log = work / "rocketd.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rocketd", "serve"],
            cwd=work,
            env=server_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_test_process(),
        )
    try:
        wait_ready(port, proc, log)
        yield DocsServer(port, metrics_port, work, env)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        remove_owned_dir(work)  # stops the embedded PostgreSQL a killed rocketd left running


def fresh_start(server: DocsServer, with_shop: bool) -> None:
    """No apps but `shop` (when asked for), and the platform admin as seeded."""
    listed = server.cli("apps", "list")
    assert listed.returncode == 0, listed.stderr
    for line in listed.stdout.splitlines():
        name = line.split("\t")[0]
        if "\t" in line:
            deleted = server.cli("apps", "delete", name, "--yes")
            assert deleted.returncode == 0, deleted.stderr
    dsn = EmbeddedPostgres(server.work / "data").start()
    seeded = bcrypt.hashpw(b"changeme", bcrypt.gensalt(4)).decode()
    with psycopg.connect(dsn.rsplit("/", 1)[0] + "/rocket", autocommit=True) as conn:
        conn.execute(
            "delete from _platform_users where id <> (select id from _platform_users"
            " order by created_at limit 1)"
        )
        conn.execute(
            "update _platform_users set email = 'platform@localhost', password_hash = %s",
            (seeded,),
        )
        conn.execute("delete from _login_throttle")
    if with_shop:
        created = server.cli("apps", "create", "shop", "--display-name", "Shop")
        assert created.returncode == 0, created.stderr


def page_dir(server: DocsServer, page: str) -> Path:
    cwd = server.work / "pages" / page.replace("/", "_")
    cwd.mkdir(parents=True)
    for name in SHARED_PATHS:
        (cwd / name).symlink_to(ROOT / name)
    (cwd / "data").symlink_to(server.work / "data")
    return cwd


def failed_block(blocks: list[Block], stderr: str) -> str:
    started = [line for line in stderr.splitlines() if line.startswith("@@ block ")]
    return started[-1].split()[-1] if started else "(before the first block)"


@pytest.mark.timeout(900)  # a page's backups and restores take minutes on a busy machine
@pytest.mark.parametrize("page", sorted(RUN), ids=str)
def test_shell_examples_of_the_page_run(docs_server: DocsServer, page: str) -> None:
    blocks = RUN[page]
    ports = {8080: docs_server.port, 9464: docs_server.metrics_port}
    fresh_start(docs_server, with_shop=page != "README.md")
    result = subprocess.run(
        ["bash", "-c", script([*SETUP[page], *blocks], ports, PRELUDE)],
        cwd=page_dir(docs_server, page),
        stdin=subprocess.DEVNULL,
        env=docs_server.env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    where = failed_block(blocks, result.stderr)
    assert result.returncode == 0 and "@@ done" in result.stderr, (
        f"{where} failed with {result.returncode}:\n{result.stderr[-3000:]}\n"
        f"--- stdout ---\n{result.stdout[-2000:]}"
    )
    for text in FORBIDDEN_OUTPUT:
        assert text not in result.stdout + result.stderr, f"{page}: {text}\n{result.stdout[-3000:]}"


def test_exemptions_stay_the_exception() -> None:
    """Only the pages about another system (systemd) and the browser test suite (admin-ui) are
    exempt as a whole, and most examples run."""
    whole = sorted(page for page, blocks in RUN.items() if all(b.exempt for b in blocks))
    assert whole == ["docs/admin-ui.md", "docs/systemd.md"]
    assert next(b.where for b in SETUP["docs/indexes-and-large-tables.md"]).startswith(
        "docs/querying.md:"
    )
    exempt = sum(1 for blocks in RUN.values() for b in blocks if b.exempt)
    total = sum(len(blocks) for blocks in RUN.values())
    assert exempt * 4 < total, f"{exempt} of {total} shell examples are exempt"
