"""`./scripts/serve` installs once, not on every start: the second start runs no pip (so it works
offline) until pyproject.toml changes. Run on a copy of the scripts with a fake .venv whose
`python` records what it is asked to do and whose `rocketd` records its arguments."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.paths import ROOT

FAKE_PYTHON = """#!/bin/sh
echo "python $*" >> "$(dirname "$0")/../../calls.log"
"""
FAKE_ROCKETD = """#!/bin/sh
echo "rocketd $*" >> "$(dirname "$0")/../../calls.log"
"""


def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "checkout"
    (root / "scripts").mkdir(parents=True)
    for name in ("install", "serve"):
        shutil.copy2(ROOT / "scripts" / name, root / "scripts" / name)
    shutil.copy2(ROOT / "pyproject.toml", root / "pyproject.toml")
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name, text in (("python", FAKE_PYTHON), ("rocketd", FAKE_ROCKETD)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return root


def run(root: Path, *args: str) -> list[str]:
    log = root / "calls.log"
    log.unlink(missing_ok=True)
    subprocess.run([str(root / "scripts" / "serve"), *args], check=True, timeout=60)
    return log.read_text().splitlines()


def test_serve_installs_on_the_first_start_only(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    first = run(root, "--config", "x.yaml")
    assert [line.split()[:4] for line in first[:-1]] == [
        ["python", "-m", "pip", "install"],
        ["python", "-m", "pip", "install"],
    ]
    assert first[-1] == "rocketd serve --config x.yaml"
    # Later starts: no pip at all (nothing that could need a network).
    assert run(root) == ["rocketd serve"]
    assert run(root) == ["rocketd serve"]
    # A dependency change (pyproject.toml) installs again, once.
    with (root / "pyproject.toml").open("a") as f:
        f.write("\n# changed\n")
    assert len(run(root)) == 3
    assert run(root) == ["rocketd serve"]


def test_a_dev_install_counts_for_serve_and_a_failed_one_does_not(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    subprocess.run([str(root / "scripts" / "install"), "dev"], check=True, timeout=60)
    assert run(root) == ["rocketd serve"]
    (root / ".venv" / ".rocketd-install-dev").unlink()
    failing = root / ".venv" / "bin" / "python"
    failing.write_text("#!/bin/sh\nexit 1\n")
    result = subprocess.run([str(root / "scripts" / "serve")], timeout=60, check=False)
    assert result.returncode != 0
    assert not (root / ".venv" / ".rocketd-install-base").exists()
