"""The protocol card names the paper it cites (title and arXiv id) and says where each `P:<line>`
it cites sits, so that a reader without the project's copy of the paper's text finds it in the
PDF; every line the card, the presets or the docs cite has that entry."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from study.card import render
from study.paper import ARXIV, LINES, TITLE
from study.spec import all_studies, get_study, study_doc

ROOT = Path(__file__).resolve().parents[1]
CITATION = re.compile(r"P:(\d+(?:[-,]\d+)*)")


def cited_numbers(text: str) -> list[tuple[int, int]]:
    return [(int(low), int(high or low)) for group in CITATION.findall(text)
            for low, _, high in (part.partition("-") for part in group.split(","))]


@pytest.mark.parametrize("name", list(all_studies()))
def test_the_card_names_the_paper_and_places_each_line_it_cites(name):
    card = render(get_study(name))
    assert TITLE in card and f"arXiv:{ARXIV}" in card
    table, _, legend = card.partition("Sources: `P:<line>` is a line of the text of")
    assert legend, "the card says what P:<line> points into"
    for low, high in cited_numbers(table):
        placed = [n for n in LINES if low <= n <= high]
        assert placed and all(f"- P:{n}: {LINES[n][0]}" in legend for n in placed), (low, high)


def test_every_line_cited_anywhere_has_its_place_and_first_words():
    texts = [study_doc(name) for name in all_studies()] + [
        path.read_text() for path in (*ROOT.glob("*.md"), *ROOT.glob("docs/*.md"),
                                      *ROOT.glob("study/*.py"))]
    for low, high in cited_numbers("\n".join(texts)):
        assert any(low <= n <= high for n in LINES), f"P:{low}-{high} has no entry in LINES"
