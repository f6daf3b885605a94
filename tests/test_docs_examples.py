"""Every ```python block of the README and the user guide runs as written.

A newcomer copies these blocks first; a block that raises ``NameError`` is the
first thing they meet. The blocks of one page run in order in one namespace,
as a reader pastes them into one interpreter: a later block may use what an
earlier one defined, never anything the page does not define. Each block is
compiled under the name ``PAGE:LINE``, so a failure's traceback points at the
page and line to fix. They run in a temporary working directory, so files the
blocks write (``graph.svg``, ``report/``) land there.
"""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = ["README.md", "docs/guide.md"]

_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def python_blocks(page):
    """``[(first line number of the code, code)]`` of every ```python block in ``page``."""
    text = (ROOT / page).read_text()
    return [(text.count("\n", 0, match.start(1)) + 1, match.group(1)) for match in _FENCE.finditer(text)]


def test_the_block_extractor_finds_every_fence():
    # The extractor must not silently miss blocks: it finds as many as the page has fences.
    for page in PAGES:
        opening_fences = len(re.findall(r"^```python", (ROOT / page).read_text(), re.MULTILINE))
        assert opening_fences > 0 and len(python_blocks(page)) == opening_fences, page


@pytest.mark.parametrize("page", PAGES)
def test_every_python_block_of_the_page_runs_as_written(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    for line, code in python_blocks(page):
        # Pad with newlines so that the code's line numbers are the page's.
        exec(compile("\n" * (line - 1) + code, f"{page}", "exec"), namespace)
