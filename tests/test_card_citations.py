"""Every `file:line` the protocol card cites exists: each cited file is in a pinned copy of its
repository's line counts (tests/data/source_line_counts.json, at the commits the card names) and
every cited line is inside it, so a citation past a file's end or into a file the repository
lacks fails; `P:<line>` is checked against the paper's text. A path belongs to the repository
named just before it ("VPT-or-FT", "VPT", "TOAST" followed by a path, or "PETL_Vision"), or to
the one named last in the same text. A new citation of a file not pinned yet needs its count:
`git -C <repository> show <commit>:<path> | wc -l`."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from study.card import SOURCES, rows
from study.spec import all_studies, get_study

COUNTS = json.loads((Path(__file__).parent / "data" / "source_line_counts.json").read_text())
PATH = r"[\w.-]+(?:/[\w.-]+)*\.(?:py|yaml|yml|md|txt)"
# "VPT" and "TOAST" name a repository where a path follows; "PETL_Vision" wherever it is named
MARKER = re.compile(rf"\b(?:(VPT-or-FT|VPT|TOAST) (?={PATH})|(PETL_Vision)\b)")
CITATION = re.compile(rf"(?<![\w/.-])(P|{PATH}):(\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*)")


def citations(text: str) -> list[tuple[str | None, str, list[tuple[int, int]]]]:
    """(repository or None for the paper, path, line ranges) of each citation in `text`."""
    marks = [(m.start(), m.group(1) or m.group(2)) for m in MARKER.finditer(text)]
    found = []
    for match in CITATION.finditer(text):
        path, spans = match.group(1), match.group(2)
        ranges = [tuple(int(n) for n in (part.split("-") * 2)[:2] if n)
                  for part in spans.split(",")]
        ranges = [(r[0], r[-1]) for r in ranges]
        if path == "P":
            found.append((None, path, ranges))
            continue
        named = [repo for start, repo in marks if start < match.start()]
        found.append((named[-1] if named else "", path, ranges))
    return found


def check(text: str) -> int:
    checked = 0
    for repo, path, ranges in citations(text):
        if repo is None:
            lines = COUNTS["paper"]["lines"]
        else:
            assert repo, f"{path} is cited without a repository in: {text}"
            files = COUNTS[repo]["files"]
            assert path in files, f"{repo} {path} is not a file of {repo} (or not pinned yet)"
            lines = files[path]
        for first, last in ranges:
            assert 1 <= first <= last <= lines, \
                f"{repo or 'paper'} {path}:{first}-{last} is past its {lines} lines"
        checked += 1
    return checked


def test_the_parser_reads_repositories_paths_and_ranges():
    text = ("P:79; VPT-or-FT configs/a.yaml:14; src/b.py:36-50,100 (wd 0); the head: VPT "
            "src/c.py:7 and TOAST visual/d.yaml:18-19 ('as in VPT'), e.py:3")
    assert citations(text) == [(None, "P", [(79, 79)]),
                               ("VPT-or-FT", "configs/a.yaml", [(14, 14)]),
                               ("VPT-or-FT", "src/b.py", [(36, 50), (100, 100)]),
                               ("VPT", "src/c.py", [(7, 7)]),
                               ("TOAST", "visual/d.yaml", [(18, 19)]), ("TOAST", "e.py", [(3, 3)])]


def test_a_citation_past_a_files_end_fails():
    lines = COUNTS["VPT-or-FT"]["files"]["tune_vtab.py"]
    with pytest.raises(AssertionError, match="past its"):
        check(f"VPT-or-FT tune_vtab.py:{lines + 1}")
    with pytest.raises(AssertionError, match="not a file of TOAST"):
        check("TOAST tune_vtab.py:1")            # TOAST's lives under visual_classification/


@pytest.mark.parametrize("key", sorted(SOURCES, key=str), ids=str)
def test_every_source_of_the_card_cites_existing_lines(key):
    source = SOURCES[key]
    check(source.where)
    check(source.text_vs_code)


@pytest.mark.parametrize("name", sorted(all_studies()))
def test_every_row_of_every_study_cites_existing_lines(name):
    cited = sum(check(row["source"]) + check(row["text vs code"]) for row in rows(get_study(name)))
    assert cited > 0 or name.startswith("demo")
