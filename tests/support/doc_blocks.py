"""The shell code blocks of README.md and docs/*.md, as the docs tests run them.

A block is a fenced ```sh (or bash/shell) block. The blocks of a page run in one bash process,
in page order, so variables and functions set by one block are there for the next, the way a
reader pastes them into one terminal. A block may be exempted by an HTML comment on the line
before its fence, with one of the reasons of `EXEMPT_REASONS`:

    <!-- docs-test: exempt third-party: journald -->
    ```sh
    journalctl -u rocketd -f -o cat | jq .
    ```

A page that starts where a section of another page ends says so in prose and with

    <!-- docs-test: setup docs/querying.md#setup -->

and the blocks of that section run first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

SHELLS: Final = ("sh", "bash", "shell")
MARKER: Final = re.compile(r"^<!-- docs-test: exempt (?P<reason>[a-z-]+): (?P<why>.+?) -->$")
# The only reasons a shell example may be left out of the run.
EXEMPT_REASONS: Final = {
    "third-party": "a recipe for another system (systemd, journald, Keycloak, Okta, Patroni, ...)",
    "host-setup": "changes the host itself (packages, users, /etc), needs root",
    "long-running": "starts a server that runs until stopped, or runs for minutes",
}
FENCE: Final = re.compile(r"^```(?P<lang>[A-Za-z]*)\s*$")
SETUP: Final = re.compile(
    r"^<!-- docs-test: setup (?P<page>[\w./-]+)#(?P<anchor>[\w-]+) -->$", re.M
)


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # of the opening fence, 1-based
    text: str
    exempt: str | None  # the marker's reason, when exempt

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def shell_blocks(path: Path, root: Path) -> list[Block]:
    """The page's shell blocks in order (exempt ones included, marked)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    page = str(path.relative_to(root))
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        if opening.group("lang") in SHELLS:
            marker = MARKER.match(lines[index - 1]) if index else None
            if marker is not None and marker.group("reason") not in EXEMPT_REASONS:
                raise ValueError(f"{page}:{index}: unknown exemption {marker.group('reason')!r}")
            exempt = marker.group("reason") if marker else None
            blocks.append(Block(page, index + 1, "\n".join(lines[index + 1 : end]), exempt))
        index = end + 1
    return blocks


def anchor_of(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def section_blocks(path: Path, anchor: str, root: Path) -> list[Block]:
    """The shell blocks under the heading `anchor` of a page, up to the next heading."""
    lines = path.read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("#")]
    begin = next((i for i in starts if anchor_of(lines[i].lstrip("#")) == anchor), None)
    if begin is None:
        raise ValueError(f"{path.name}: no heading #{anchor}")
    end = next((i for i in starts if i > begin), len(lines))
    return [b for b in shell_blocks(path, root) if begin < b.line - 1 < end]


def setup_blocks(path: Path, root: Path) -> list[Block]:
    """The blocks the page's `docs-test: setup` markers name, in order."""
    found: list[Block] = []
    for marker in SETUP.finditer(path.read_text(encoding="utf-8")):
        found.extend(section_blocks(root / marker.group("page"), marker.group("anchor"), root))
    return found


def script(blocks: list[Block], ports: dict[int, int], prelude: str = "") -> str:
    """One bash script running the page's runnable blocks in order, each announced on stderr
    (so a failure names its block), after `prelude` (the starting point the pages assume). The
    pages' ports (8080, 9464) become the test server's (`ports`: page port -> real port), since
    the machine may run other servers on them."""
    parts = ["set -euo pipefail", prelude]
    for number, block in enumerate(blocks):
        if block.exempt:
            continue
        text = block.text
        for written, real in ports.items():
            text = text.replace(f"localhost:{written}", f"localhost:{real}")
            text = text.replace(f"127.0.0.1:{written}", f"127.0.0.1:{real}")
        parts.append(f"echo '@@ block {number} {block.where}' >&2")
        parts.append(text)
    parts.append("echo '@@ done' >&2")
    return "\n".join(parts) + "\n"
