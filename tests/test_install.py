"""The Makefile's install: uv gets the package indexes pip is configured with, by pip's own
precedence (a setting in the environment over one in a file), read through real `pip config`."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def uv_flags(tmp_path: Path, config: str, **environment: str) -> list[str]:
    path = tmp_path / "pip.conf"
    path.write_text(config)
    env = {**os.environ, "PIP_CONFIG_FILE": str(path), **environment}
    printed = subprocess.run([sys.executable, "scripts/uv_install_flags.py"], cwd=ROOT, env=env,
                             check=True, capture_output=True, text=True).stdout
    return shlex.split(printed)


def test_uv_is_given_the_indexes_pip_is_configured_with(tmp_path):
    flags = uv_flags(tmp_path, "[global]\nindex-url = https://mirror.example/simple\n"
                     "extra-index-url = file:///a/simple file:///b/simple\n"
                     "find-links = /from-file\n[install]\nconstraint = /caps.txt\n",
                     PIP_FIND_LINKS="/from-env", PIP_NO_INDEX="no")
    pairs = set(zip(flags[::2], flags[1::2]))
    assert len(flags) == 2 * len(pairs)
    assert {("--index-url", "https://mirror.example/simple"),
            ("--extra-index-url", "file:///a/simple"), ("--extra-index-url", "file:///b/simple"),
            ("--find-links", "/from-env"), ("--constraint", "/caps.txt"),
            ("--index-strategy", "unsafe-best-match")} <= pairs
    assert ("--find-links", "/from-file") not in pairs


@pytest.mark.parametrize("setting", ["yes", "true", "1"])
def test_an_offline_wheelhouse_stays_offline(tmp_path, setting):
    flags = uv_flags(tmp_path, f"[install]\nno-index = {setting}\nfind-links = /wheels\n",
                     PIP_FIND_LINKS="/wheels")
    assert "--no-index" in flags
    assert flags[flags.index("--find-links") + 1] == "/wheels"
