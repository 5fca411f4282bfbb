"""Prints the flags that make `uv pip install` use the package indexes pip is configured with
(`pip config list`: index-url, extra-index-url, find-links, constraint, no-index), since uv does
not read pip's configuration. The Makefile installs with uv, which unpacks and compiles in
parallel: `make install` takes 37-39 s on 2 cores where pip took 1:33-1:39 (docs/speed.md)."""
from __future__ import annotations

import ast
import shlex
import subprocess
import sys

UV_FLAG = {"index-url": "--index-url", "extra-index-url": "--extra-index-url",
           "find-links": "--find-links", "constraint": "--constraint", "no-index": "--no-index"}
YES = {"1", "true", "yes", "on"}
SCOPES = ("global", "install", ":env:")     # pip's precedence: a later scope wins


def pip_settings(pip_config_list: str) -> dict[str, list[str]]:
    """The index settings in `pip config list` output; where a scope sets one again, it wins."""
    found = []
    for line in pip_config_list.splitlines():
        key, _, value = line.partition("=")
        scope, _, name = key.rpartition(".")
        if name in UV_FLAG and scope in SCOPES:
            found.append((SCOPES.index(scope), name, ast.literal_eval(value).split()))
    return {name: values for _, name, values in sorted(found)}


def uv_flags(settings: dict[str, list[str]]) -> list[str]:
    flags = ["--index-strategy", "unsafe-best-match"]   # as pip: the best version of any index
    for name, values in settings.items():
        if name == "no-index":                          # a switch: pip reads yes/no words
            flags += [UV_FLAG[name]] if values[-1].lower() in YES else []
        else:
            flags += [part for value in values for part in (UV_FLAG[name], value)]
    return flags


if __name__ == "__main__":
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], check=True,
                            capture_output=True, text=True).stdout
    print(shlex.join(uv_flags(pip_settings(listed))))
