"""Every relative link of README.md and docs/*.md resolves: the file exists and the anchor is one of its headings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^(```|~~~).*?^\1", re.DOTALL | re.MULTILINE)
CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(?P<text>.+?)\s*#*\s*$", re.MULTILINE)


def prose(text: str) -> str:
    """`text` without fenced code blocks, whose brackets are code, not links."""
    return FENCE.sub("", text)


def slugs(text: str) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation but - and _ dropped, spaces as -,
    a repeated slug suffixed -1, -2, ..."""
    seen: dict[str, int] = {}
    anchors: set[str] = set()
    for match in HEADING.finditer(prose(text)):
        slug = re.sub(r"[^\w\- ]", "", match["text"].strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(f"{slug}-{count}" if count else slug)
    return anchors


def broken_links(page: Path) -> list[str]:
    """The relative links of `page` whose file is missing or whose anchor is no heading's slug there."""
    broken = []
    for match in LINK.finditer(CODE.sub("", prose(page.read_text(encoding="utf-8")))):
        target = match["target"]
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http(s), mailto: not checked
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{page.name}: {target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in slugs(resolved.read_text(encoding="utf-8")):
            broken.append(f"{page.name}: {target}: no such heading")
    return broken


def test_slugs_follow_github() -> None:
    text = ("# Real PASCAL VOC 2012\n## The `crf` stage, on real photos!\n## Notes\n## Notes\n"
            "```\n# not a heading\n```\n")
    assert slugs(text) == {"real-pascal-voc-2012", "the-crf-stage-on-real-photos", "notes", "notes-1"}


def test_a_broken_link_is_flagged(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.md").write_text("# Real scale: many GPUs\n## Memory\n")
    (tmp_path / "pic.png").write_bytes(b"")
    page = tmp_path / "README.md"
    page.write_text("# Top\n[ok](docs/b.md#real-scale-many-gpus) [ok](#top) ![ok](pic.png) [web](https://x.org/y)\n"
                    "`[code](nowhere.md)`\n[gone](docs/c.md) [bad](docs/b.md#memory-at-scale) [bad](#nope)\n"
                    "![gone](docs/pic.png)\n")
    assert broken_links(page) == ["README.md: docs/c.md: no such file",
                                  "README.md: docs/b.md#memory-at-scale: no such heading",
                                  "README.md: #nope: no such heading", "README.md: docs/pic.png: no such file"]


@pytest.mark.parametrize("page", [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))], ids=lambda p: p.name)
def test_the_repository_links_resolve(page: Path) -> None:
    assert broken_links(page) == []
