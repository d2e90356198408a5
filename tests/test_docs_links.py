"""The README and docs/ hold together: every relative link and image resolves, anchors name real headings.

README.md stays short (at most 12,000 characters: the two commands, the shortest use, the headline
results and links); everything else lives in docs/. A moved section or a renamed file breaks a link,
and this test says which one, in which file, on which line.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_MAX_CHARS = 12_000

_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
# [text](target "title") and ![alt](target); link text may hold one level of brackets.
_INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
_HTML = re.compile(r"""<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_ATX = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
_SETEXT = re.compile(r"^\s{0,3}(=+|-+)\s*$")
_LINE_ANCHOR = re.compile(r"^L(\d+)(?:-L(\d+))?$")


def _prose_lines(text: str, keep_code_spans: bool = False) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks; inline code spans blanked out unless kept."""
    out, fence = [], None
    for number, line in enumerate(text.splitlines(), start=1):
        match = _FENCE.match(line)
        if match:
            marker = match.group(1)
            if fence is None:
                fence = marker
                continue
            if marker[0] == fence[0] and len(marker) >= len(fence):
                fence = None
                continue
        if fence is None:
            out.append((number, line if keep_code_spans else _CODE_SPAN.sub("", line)))
    return out


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: its rendered text, lowercased, punctuation other than - and _
    dropped, spaces to hyphens (not collapsed: "loops (n = 64)" -> "loops-n--64").

    >>> github_slug("How ICP sits in `generate()` (read this once)")
    'how-icp-sits-in-generate-read-this-once'
    >>> github_slug("Results on the default model (SmolLM2-135M-Instruct)")
    'results-on-the-default-model-smollm2-135m-instruct'
    >>> github_slug("loops (n = 64)")
    'loops-n--64'
    """
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"(?<!\w)_+|_+(?!\w)", "", text)  # _emphasis_ markers, not snake_case
    text = text.strip().lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in "-_ ")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor GitHub makes for a Markdown file (repeats get -1, -2, ...)."""
    seen: dict[str, int] = {}
    found = set()
    previous = ""
    for _, line in _prose_lines(path.read_text(encoding="utf-8"), keep_code_spans=True):
        heading = None
        atx = _ATX.match(line)
        if atx:
            heading = atx.group(2)
        elif _SETEXT.match(line) and previous.strip() and not previous.lstrip().startswith(("|", "-", "*", ">")):
            heading = previous.strip()  # a setext heading: prose underlined with = or -
        previous = line
        if heading is None:
            continue
        slug = github_slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found



def relative_links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link and image in a Markdown file whose target is not a URL."""
    links = []
    for number, line in _prose_lines(path.read_text(encoding="utf-8")):
        targets = [m.group(1) for m in _INLINE.finditer(line)]
        targets += [m.group(1) for m in _HTML.finditer(line)]
        reference = _REFERENCE.match(line)
        if reference:
            targets.append(reference.group(1))
        for target in targets:
            target = target.strip("<>").strip()
            if target and not _SCHEME.match(target) and not target.startswith("//"):
                links.append((number, target))
    return links


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with each relative link of `path`: a missing file, a file outside the repository,
    an anchor that is not a heading of the Markdown file it points into, a line past a file's end."""
    problems = []
    root = root.resolve()
    for number, target in relative_links(path):
        where = f"{path.resolve().relative_to(root).as_posix()}:{number}: {target}"
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / unquote(file_part)).resolve() if file_part else path.resolve()
        if not resolved.is_relative_to(root):
            problems.append(f"{where} (outside the repository)")
            continue
        if not resolved.exists():
            problems.append(f"{where} (no such file: {resolved.relative_to(root)})")
            continue
        if not anchor:
            continue
        anchor = unquote(anchor)
        if resolved.suffix.lower() == ".md":
            if anchor not in anchors(resolved):
                problems.append(f"{where} (no heading with the anchor #{anchor} in {resolved.relative_to(root)})")
        elif resolved.is_file() and _LINE_ANCHOR.match(anchor):
            last = max(int(n) for n in _LINE_ANCHOR.match(anchor).groups() if n)
            lines = len(resolved.read_text(encoding="utf-8", errors="replace").splitlines())
            if last > lines:
                problems.append(f"{where} (line {last} is past the end: {lines} lines)")
    return problems


DOCUMENTS = [README, *sorted((ROOT / "docs").rglob("*.md"))]


def test_readme_is_short():
    length = len(README.read_text(encoding="utf-8"))
    assert length <= README_MAX_CHARS, f"README.md: {length} characters (max {README_MAX_CHARS}); move detail to docs/"


def test_every_docs_page_is_reached_from_the_readme():
    """The README links the docs index; every page is linked from the README or from the index."""
    index = ROOT / "docs" / "README.md"

    def linked(path):
        return {(path.parent / unquote(t.partition("#")[0])).resolve() for _, t in relative_links(path)}

    assert "## Documentation" in README.read_text(encoding="utf-8")
    assert index.resolve() in linked(README)
    reached = linked(README) | linked(index)
    missing = [p.relative_to(ROOT).as_posix() for p in DOCUMENTS[1:] if p.resolve() not in reached | {index.resolve()}]
    assert missing == [], f"docs pages linked neither from README.md nor docs/README.md: {missing}"


def test_readme_holds_the_ci_test_command_exactly():
    """`.ci/run` runs the README's test command; both must say the same bytes."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    command = next(line for line in ci if line.startswith("python3 -m venv .venv"))
    assert command in README.read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(path):
    assert broken_links(path) == []


def test_the_checker_catches_broken_links(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "code.py").write_text("x = 1\ny = 2\n")
    (tmp_path / "docs" / "page.md").write_text("# A page\n\n## Loops (n = 64)\n\n## In `generate()`\n\ntext\n")
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Title\n\n"
        "[ok](docs/page.md) [ok anchor](docs/page.md#loops-n--64) ![ok image](code.py) [self](#title)\n"
        "[code in the heading](docs/page.md#in-generate)\n"
        "[web](https://example.com/missing.md) [mail](mailto:a@b.c)\n"
        "`[in code](missing-in-span.md)`\n"
        "```\n[in a fence](missing-in-fence.md)\n```\n"
        "[gone](docs/gone.md) ![gone image](docs/gone.png) [bad anchor](docs/page.md#loops)\n"
        "[bad self](#nowhere) [outside](../escape.md) [past the end](code.py#L9) [line ok](code.py#L2)\n"
        "[ref]: docs/also-gone.md\n"
    )
    problems = broken_links(readme, root=tmp_path)
    assert [p.split(": ", 1)[1].split(" (")[0] for p in problems] == [
        "docs/gone.md",
        "docs/gone.png",
        "docs/page.md#loops",
        "#nowhere",
        "../escape.md",
        "code.py#L9",
        "docs/also-gone.md",
    ], problems
