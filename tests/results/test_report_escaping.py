"""Every report escapes user text for its format: summary.md, report.html and the JUnit XML messages.

Hostile payloads go into test names, docstrings, claims, notes (prompt texts of counterexamples),
baseline messages and problems; the rendered reports must show them as text, nothing more.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from mitest.results.report.html import render_html
from mitest.results.report.markdown import render_markdown

HOSTILE = [
    "<script>alert(3)</script>",
    "a | b || c",
    "`tick` ``two`` `",
    "[link](javascript:alert(1))",
    "![img](javascript:alert(2))",
    "line one\nline two\r\n# heading\n| --- |",
    "**bold** _em_ ~~strike~~ $x^2$ \\| back\\slash",
    '<img src=x onerror="alert(4)"> &lt;script&gt;',
    "<a href='javascript:alert(5)'>x</a>",
    "` <script>alert(6)</script> `",  # a backtick that ends a code span early exposes what follows
]


def hostile_run(payload: str) -> dict:
    claim = {
        "outcome": "REFUTED",
        "claim": f"claim {payload}",
        "test": f"test_x.py::test_a[{payload}]",
        "metric": f"metric {payload}",
        "kind": "decrease",
        "n": 12,
        "estimate": 0.5,
        "low": 0.1,
        "high": 0.9,
        "threshold": 1.0,
        "pvalue": 0.01,
        "notes": [f"counterexample (shrunk): prompt {payload!s}"],
        "baseline": {"status": "regressed", "message": f"message {payload}"},
        "per_prompt": {"claim_value": [0.1, 0.2]},
    }
    return {
        "created": f"2026 {payload}",
        "summary": {"claims": 2, "holds": 0, "refuted": 2, "inconclusive": 0, "regressions": 1, "undecided": 1},
        "settings": {"alpha": 0.05, "correction": f"bonferroni {payload}", "seed": 0},
        "claims": [claim, dict(claim, test=f"test_y.py::{payload}")],
        "undecided": [{"claim": f"old {payload}", "test": f"t {payload}", "error": f"E {payload}", "old_estimate": 1}],
        "stale": [{"key": f"k {payload}", "reason": f"gone {payload}"}],
        "problems": [f"problem {payload}"],
    }


class Elements(HTMLParser):
    """Every tag and attribute of an HTML document, and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))

    def handle_data(self, data):
        self.text.append(data)


def elements(document: str) -> Elements:
    parser = Elements()
    parser.feed(document)
    return parser


def assert_only(document: str, allowed: set[str]) -> Elements:
    parsed = elements(document)
    tags = {tag for tag, _ in parsed.tags}
    assert tags <= allowed, f"unexpected elements {tags - allowed}"
    for tag, attrs in parsed.tags:
        for name, value in attrs:
            assert not name.startswith("on"), (tag, name)
            assert "javascript" not in (value or "").lower(), (tag, name, value)
    return parsed


MARKDOWN = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])  # as GitHub: HTML on
MARKDOWN_TAGS = {"h1", "p", "strong", "table", "thead", "tbody", "tr", "th", "td", "code", "br", "ul", "li"}


@pytest.mark.parametrize("payload", HOSTILE)
def test_summary_markdown_shows_hostile_text_as_text(payload):
    markdown = render_markdown(hostile_run(payload))
    rendered = MARKDOWN.render(markdown)
    assert_only(rendered, MARKDOWN_TAGS)
    rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert len(rows) == 2 + 2  # header, separator, two claims: no name broke a row
    assert rendered.count("<tr>") == 3 and rendered.count("<td>") == 2 * 8  # eight cells in each claim row
    text = "".join(elements(rendered).text)
    one_line = " ".join(payload.replace("\r\n", "\n").split("\n"))
    assert f"claim {one_line}" in text and f"test_y.py::{one_line}" in text
    assert f"problem {one_line}" in text and f"gone {one_line}" in text


@pytest.mark.parametrize("payload", HOSTILE)
def test_escape_markdown_and_code_span_round_trip_through_a_renderer(payload):
    from mitest.results.report.markdown import code_span, escape_markdown

    one_line = " ".join(payload.replace("\r\n", "\n").split("\n"))
    inline = MarkdownIt("commonmark", {"html": True}).renderInline
    assert "".join(elements(inline(escape_markdown(payload))).text) == one_line
    assert elements(inline(code_span(payload))).tags == [("code", [])]
    assert "".join(elements(inline(code_span(payload))).text) == one_line.replace("|", "\\|")


HTML_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "p", "b", "table", "tr", "th", "td", "div"}
HTML_TAGS |= {"svg", "line", "circle", "text"}


@pytest.mark.parametrize("payload", HOSTILE)
def test_report_html_shows_hostile_text_as_text(payload):
    document = render_html(hostile_run(payload))
    parsed = assert_only(document, HTML_TAGS)
    text = "".join(parsed.text)
    assert f"claim {payload}" in text and f"message {payload}" in text and f"prompt {payload}" in text


def test_a_hostile_suite_writes_safe_reports_and_well_formed_junit(pytester, monkeypatch):
    """End to end: hostile test ids, docstrings, metric names and failure messages through the plugin."""
    monkeypatch.delenv("CI", raising=False)
    ids = [p for p in HOSTILE if "\n" not in p and "\r" not in p] + ["new\nline"]
    pytester.makepyfile(
        test_hostile=f'''
import numpy as np
import pytest
import mitest as mt

IDS = {ids!r}


@pytest.mark.parametrize("payload", IDS, ids=IDS)
def test_claim(mi, payload):
    """Docstring <script>alert(3)</script> | pipe `tick` [x](javascript:alert(1))"""
    clean = np.random.default_rng(0).normal(3, 1, 20)
    mt.Effect.from_values(clean, clean + 0.1, metric="m " + payload).expect_increase(at_least=1.0)


@pytest.mark.parametrize("payload", IDS, ids=IDS)
def test_plain_failure(payload):
    assert False, payload + " ]]> \\x1b[31m \\x00 & <b>"
'''
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--junitxml=junit.xml")
    result.assert_outcomes(failed=2 * len(ids))
    root = ElementTree.parse(pytester.path / "junit.xml").getroot()
    cases = root.findall(".//testcase")
    assert len(cases) == 2 * len(ids)
    messages = [case.find("failure").get("message") for case in cases]
    assert any("<script>alert(3)</script>" in message for message in messages)  # parsed back as text
    markdown = (pytester.path / "reports" / "summary.md").read_text()
    assert_only(MARKDOWN.render(markdown), MARKDOWN_TAGS)
    assert len([line for line in markdown.splitlines() if line.startswith("| ")]) == 2 + len(ids)
    assert_only((pytester.path / "reports" / "report.html").read_text(), HTML_TAGS)


# -- property: any text at all comes out of a Markdown renderer as that text -----------------------

_TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=40)


@settings(max_examples=300, deadline=None)
@given(text=_TEXT | st.lists(st.sampled_from(list("<>&|`*_[]()!#~$\\\n\r :/")), max_size=20).map("".join))
def test_any_text_renders_as_itself(text):
    from mitest.results.report.markdown import code_span, escape_markdown

    inline = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).renderInline
    one_line = " ".join(re.split(r"\r\n|\r|\n|\u2028|\u2029|\x0b|\x0c|\x85", text))
    rendered = elements(inline(escape_markdown(text)))
    assert rendered.tags == [] and "".join(rendered.text) == one_line
    code = elements(inline(code_span(text)))
    assert [tag for tag, _ in code.tags] == ["code"]


@settings(max_examples=100, deadline=None)
@given(text=_TEXT)
def test_any_text_in_report_html_is_text(text):
    parsed = assert_only(render_html(hostile_run(text)), HTML_TAGS)
    assert f"message {text}" in "".join(parsed.text)
