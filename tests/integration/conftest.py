"""Shared fixtures for strata's integration tests.

The tests run the binaries of a build directory: $STRATA_BUILD_DIR (set by
CTest), else build-asan/ or build/ at the top of the repository.
"""
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _build_dir():
    env = os.environ.get("STRATA_BUILD_DIR")
    if env:
        return pathlib.Path(env)
    for name in ("build-asan", "build"):
        d = ROOT / name
        if (d / "strata").exists():
            return d
    pytest.fail("no built strata binary: run `make test` (or set STRATA_BUILD_DIR)")


@pytest.fixture(scope="session")
def build_dir():
    return _build_dir()


@pytest.fixture
def strata_cmd(build_dir):
    """Run `strata ARGS...`; returns the CompletedProcess (bounded in time)."""

    def run(*args, check=None):
        p = subprocess.run(
            [str(build_dir / "strata"), *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if check is not None:
            assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
        return p

    return run
