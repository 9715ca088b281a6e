"""`bench.instructions` counts instructions per batch from callgrind's dumps at each mark: checked
with a real valgrind on a small program that marks (calls `os.getppid()`) after batches of
known, different sizes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.instructions import (
    MARK_FUNCTION,
    Plan,
    batch_counts,
    per_request,
    report,
    write_results,
)

PROGRAM = """
import os
def work(n):
    total = 0
    for i in range(n):
        total += i * i
    return total
work(1000)
os.getppid()
for size in (20000, 80000, 20000):
    work(size)
    os.getppid()
"""


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_each_mark_dumps_the_instructions_of_the_batch_before_it(tmp_path: Path) -> None:
    subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--dump-before={MARK_FUNCTION}",
            f"--callgrind-out-file={tmp_path}/prog.%p",
            sys.executable,
            "-S",
            "-c",
            PROGRAM,
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (tmp_path / "prog-other.1.1").write_text("summary: 5\n")  # another stem: not counted
    counts = batch_counts(tmp_path, "prog")
    assert len(counts) == 4  # start-up and the first work, then one per batch
    small, large, small_again = counts[1:]
    # four times the loop is about four times the instructions; equal batches count alike
    assert 3.5 < large / small < 4.5
    assert abs(small_again - small) / small < 0.05
    assert per_request(counts, 2) == [small / 2, large / 2, small_again / 2]


def test_batches_are_read_in_dump_order_not_name_order(tmp_path: Path) -> None:
    for dump, count in ((1, 100), (2, 20), (10, 30), (9, 40)):
        (tmp_path / f"get-0_1.77.{dump}").write_text(f"events: Ir\nsummary: {count}\n")
    (tmp_path / "get-0_1.77").write_text("summary: 999\n")  # after the last mark: not a batch
    (tmp_path / "get-0.78.1").write_text("summary: 1\n")  # mode 0, not 0.1
    assert batch_counts(tmp_path, "get-0_1") == [100, 20, 40, 30]


def test_a_dump_without_its_summary_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "get-off.5.1").write_text("events: Ir\n")
    with pytest.raises(RuntimeError, match="no summary"):
        batch_counts(tmp_path, "get-off")
    with pytest.raises(RuntimeError, match="a dump per batch"):
        per_request([100], 10)


def test_the_report_compares_each_mode_with_the_first_of_its_operation() -> None:
    plans = [Plan(mode, "get", 10, 2, 5000, "postgresql://x/y") for mode in ("off", "0.1")]
    table = report(plans, [[100.0, 102.0], [110.0, 112.0]], 10)
    assert "| get | off | 101 | 100, 102 | 1.000 |" in table
    assert "| get | 0.1 | 111 | 110, 112 | 1.099 |" in table
    assert plans[1].stem == "get-0_1"


def test_the_results_file_names_the_commit_and_the_command(tmp_path: Path) -> None:
    path = write_results(tmp_path / "results", "instr", "| a table |", ["--modes", "off,1", "get"])
    assert path.name.startswith("instructions-instr-") and path.suffix == ".md"
    text = path.read_text()
    assert "`python -m bench.instructions --modes off,1 get`" in text
    assert "- commit: `" in text and "- commit: `unknown`" not in text
    assert text.rstrip().endswith("| a table |")
