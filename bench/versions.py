"""The two versions an A/B run compares: a git ref checked out and installed once in a cache, or
an existing checkout with its own `.venv`.

A ref (`8d8126c`, `main`, `v1.2`) is resolved to its commit in this repository, checked out with
`git worktree add --detach` into `<cache>/<commit>` and given a virtual environment there
(`python -m venv .venv`, `pip install -e .`) the first time; later runs reuse it. A marker file
written after the install marks a usable entry, so an interrupted install is redone. `clear_cache`
removes the entries with `git worktree remove --force` (and the directory, if git no longer knows
it). The default cache is `<tmp>/rocketd-bench-ab`.

A path names a checkout that is already installed: `<path>/.venv/bin/rocketd` must exist
(`scripts/install` makes it). An existing directory wins over a ref of the same name.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness import REPO_ROOT

DEFAULT_CACHE = Path(tempfile.gettempdir()) / "rocketd-bench-ab"
READY_MARKER = ".bench-ab-installed"
INSTALL_TIMEOUT_S = 900.0


class VersionError(RuntimeError):
    """A version cannot be used; the message says what to do."""


@dataclass(frozen=True)
class Version:
    """One side of an A/B run: where its code is, what runs it, and its extra environment."""

    side: str  # "A" or "B"
    role: str  # "baseline" or "candidate"
    spec: str  # what was asked for: a ref, a path, or "current checkout"
    checkout: Path
    commit: str  # full hash of the checkout's HEAD
    subject: str  # its first line
    modified: bool  # tracked files differ from HEAD (a path or the current checkout)
    code_digest: str  # sha256 of the rocketd/*.py files that run, 12 hex digits
    env: dict[str, str] = field(default_factory=dict)

    @property
    def executable(self) -> Path:
        return self.checkout / ".venv" / "bin" / "rocketd"

    def describe(self) -> str:
        dirty = " (tracked files modified)" if self.modified else ""
        env = " ".join(f"{k}={v}" for k, v in self.env.items()) or "(none)"
        return (
            f"{self.side} = {self.role} `{self.spec}`: {self.commit[:10]}{dirty} "
            f'"{self.subject}", checkout {self.checkout}, rocketd code sha256 {self.code_digest}, '
            f"extra environment {env}"
        )


def _git(cwd: Path, *args: str, timeout: float = 120.0) -> str:
    proc = subprocess.run(
        ["git", "--no-optional-locks", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise VersionError(f"git {' '.join(args)} failed in {cwd}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def code_digest(package: Path) -> str:
    """sha256 over the paths and contents of a package's `**/*.py`, 12 hex digits: equal
    digests, equal code."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def resolve(
    spec: str | None,
    *,
    side: str,
    role: str,
    env: dict[str, str],
    cache: Path = DEFAULT_CACHE,
    repo: Path = REPO_ROOT,
) -> Version:
    """The version `spec` names (None: the current checkout), installed and ready to start."""
    if spec is None:
        checkout, shown = repo, "current checkout"
    elif Path(spec).is_dir():
        checkout, shown = Path(spec).resolve(), spec
    else:
        checkout, shown = _cached_checkout(spec, cache, repo), spec
    if not (checkout / ".venv" / "bin" / "rocketd").exists():
        raise VersionError(
            f"{checkout} has no .venv/bin/rocketd: run `scripts/install` there first"
        )
    commit = _git(checkout, "rev-parse", "HEAD")
    modified = bool(
        _git(checkout, "status", "--porcelain", "--untracked-files=no", "--", "rocketd")
    )
    return Version(
        side=side,
        role=role,
        spec=shown,
        checkout=checkout,
        commit=commit,
        subject=_git(checkout, "log", "-1", "--format=%s", commit),
        modified=modified,
        code_digest=code_digest(checkout / "rocketd"),
        env=dict(env),
    )


def _cached_checkout(ref: str, cache: Path, repo: Path) -> Path:
    """`<cache>/<commit>`: a detached worktree of `ref` with rocketd installed in its .venv."""
    try:
        commit = _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except VersionError:
        raise VersionError(f"{ref!r} is neither a directory nor a commit of {repo}") from None
    checkout = cache / commit
    if (checkout / READY_MARKER).exists():
        return checkout
    cache.mkdir(parents=True, exist_ok=True)
    if not checkout.exists():
        print(f"ab: checking out {ref} ({commit[:10]}) into {checkout}", flush=True)
        _git(repo, "worktree", "add", "--detach", str(checkout), commit)
    print(f"ab: installing {ref} into {checkout}/.venv (once; reused afterwards)", flush=True)
    venv = checkout / ".venv"
    _run([sys.executable, "-m", "venv", "--clear", str(venv)], checkout)
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "-e", "."], checkout)
    (checkout / READY_MARKER).write_text(f"{ref}\n{commit}\n")
    return checkout


def _run(argv: list[str], cwd: Path) -> None:
    proc = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
    )
    if proc.returncode != 0:
        raise VersionError(f"{' '.join(argv)} failed in {cwd}:\n{proc.stderr or proc.stdout}")


def cached(cache: Path = DEFAULT_CACHE) -> list[Path]:
    """The cache's entries (checkouts, installed or not)."""
    return sorted(p for p in cache.iterdir() if p.is_dir()) if cache.is_dir() else []


def clear_cache(cache: Path = DEFAULT_CACHE, repo: Path = REPO_ROOT) -> list[Path]:
    """Remove every cached checkout (its git worktree entry too); returns what was removed."""
    removed = cached(cache)
    for checkout in removed:
        try:
            _git(repo, "worktree", "remove", "--force", str(checkout))
        except VersionError:
            pass  # not (or no longer) a worktree of this repository: the directory goes below
        shutil.rmtree(checkout, ignore_errors=True)
    return removed
