"""`rocketd --version` and a full `--help` for every command and subcommand."""

from __future__ import annotations

import argparse

import pytest

from rocketd import __version__, cli


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path (`("apps", "create")`, ...) below `parser`."""
    found: list[tuple[str, ...]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((*path, name))
                found.extend(commands(sub, (*path, name)))
    return found


ALL_COMMANDS = commands(cli._parser())


def test_version_flag_prints_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"rocketd {__version__}"


def test_the_command_list_covers_the_documented_commands() -> None:
    assert {path[0] for path in ALL_COMMANDS} >= {
        "serve",
        "check-config",
        "version",
        "apps",
        "export",
        "import",
        "diff",
        "backup",
        "restore",
        "platform",
    }
    assert ("apps", "create") in ALL_COMMANDS and ("platform", "set-password") in ALL_COMMANDS


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=" ".join)
def test_every_command_has_a_full_help(
    path: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*path, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: rocketd {' '.join(path)}")
    parser = cli._parser()
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    # A description of its own, beyond the one-line summary, and help for every argument.
    assert parser.description and len(parser.description) > 20, path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        assert action.help and action.help != argparse.SUPPRESS, (path, action.dest)
        for flag in action.option_strings:
            assert flag in text
