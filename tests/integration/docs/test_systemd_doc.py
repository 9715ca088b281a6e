"""docs/systemd.md's install steps fit the repository as it is (they cannot run here: they need
root and a systemd host), and systemd/rocketd.env.example ships no placeholder as a live value."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from rocketd.config import load_settings
from tests.support.paths import ROOT

DOC = ROOT / "docs" / "systemd.md"


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", text, flags=re.M | re.S)


def commands(text: str) -> list[list[str]]:
    found = []
    for block in sh_blocks(text):
        pending = ""
        for line in block.replace("\\\n", " ").splitlines():
            pending += line + "\n"
            try:  # a quoted argument may go on over several lines
                words = shlex.split(pending, comments=True)
            except ValueError:
                continue
            pending = ""
            if words:
                found.append(words)
    return found


def test_install_steps_name_files_that_exist_and_a_path_pip_can_install() -> None:
    cmds = commands(DOC.read_text())
    installs = [c for c in cmds if c[:2] == ["sudo", "install"] and "-d" not in c]
    assert installs, "the install steps are gone"
    for cmd in installs:
        source, dest = cmd[-2], cmd[-1]
        assert (ROOT / source).is_file(), f"{source} is not a file of the repository ({cmd})"
        assert dest.startswith("/")
    # The unit runs what the steps put in place.
    unit = (ROOT / "systemd" / "rocketd.service").read_text()
    [exec_start] = re.findall(r"^ExecStart=(.*)$", unit, flags=re.M)
    words = shlex.split(exec_start)
    program, config = words[0], words[-1]
    assert ["sudo", "ln", "-s", "/opt/rocketd/venv/bin/rocketd", program] in cmds
    assert any(c[-1] == config and c[-2] == "etc/rocket.yaml" for c in installs)
    # rocketd is not on PyPI: pip installs the copied checkout, in a venv python3-venv provides.
    pip = [c for c in cmds if "pip" in " ".join(c[:2]) and "install" in c]
    assert pip and all(c[-1].startswith("/") for c in pip), pip
    order = [" ".join(c) for c in cmds]
    apt = next(i for i, c in enumerate(order) if "apt-get install" in c and "python3-venv" in c)
    venv = next(i for i, c in enumerate(order) if "-m venv" in c)
    assert apt < venv


def test_the_checkout_copy_step_yields_an_installable_tree(tmp_path: Path) -> None:
    archive = subprocess.run(
        ["git", "archive", "HEAD"], cwd=ROOT, capture_output=True, check=True, timeout=60
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp_path)], input=archive, check=True, timeout=60)
    for name in ("pyproject.toml", "etc/rocket.yaml", "systemd/rocketd.service", "rocketd"):
        assert (tmp_path / name).exists(), name


def env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / "systemd" / "rocketd.env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def test_env_example_sets_no_placeholder_and_passes_strict_checking(tmp_path: Path) -> None:
    values = env_example()
    for name, value in values.items():
        assert not re.search(r"change|replace|example|internal|secret|PASSWORD|HOST", value), (
            name,
            value,
        )
    settings = load_settings(str(ROOT / "etc" / "rocket.yaml"), environ=values, strict=True)
    assert settings.database.configured is False  # no made-up database URL
    assert settings.platform_jwt_secret == ""
