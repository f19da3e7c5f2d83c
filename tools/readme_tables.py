"""Keep the figure tables of README.md and docs/*.md equal to the artifacts they come from.

A table in a page sits between `<!-- from <path> -->` and `<!-- end -->`, where <path> (relative to the repository
root) is a markdown file a command wrote, such as `artifacts/synthetic/ablation/table.md`. `python -m
tools.readme_tables` copies each file into its block in README.md and every docs/*.md page; `--check` writes nothing
and exits 1 naming every block that differs (a test runs it).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

BLOCK = re.compile(r"(<!-- from (?P<path>\S+) -->\n)(?P<body>.*?)(<!-- end -->)", re.DOTALL)


def refreshed(text: str, root: Path) -> tuple[str, list[str]]:
    """`text` with every block replaced by its file's content, and the paths of the blocks that changed."""
    changed: list[str] = []

    def fill(match: re.Match[str]) -> str:
        source = root / match["path"]
        if not source.is_file():
            raise FileNotFoundError(f"a block names {match['path']}, which does not exist; run the command that "
                                    "writes it")
        body = source.read_text(encoding="utf-8")
        if body != match["body"]:
            changed.append(match["path"])
        return match.group(1) + body + match.group(4)

    return BLOCK.sub(fill, text), changed


def pages(root: Path) -> list[Path]:
    """The pages whose blocks are kept current: README.md and every docs/*.md under `root`."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.readme_tables", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."), help="the repository root (default: .)")
    parser.add_argument("--check", action="store_true", help="only report blocks that differ; exit 1 if any")
    args = parser.parse_args(argv)
    updates: dict[Path, str] = {}
    for page in pages(args.root):
        try:
            text, changed = refreshed(page.read_text(encoding="utf-8"), args.root)
        except FileNotFoundError as error:  # before any page is written: all pages or none
            print(f"error: {page}: {error}", file=sys.stderr)
            return 1
        for path in changed:
            print(f"{page}: the block from {path} differs from the file", file=sys.stderr)
        if changed:
            updates[page] = text
    if args.check:
        return 1 if updates else 0
    for page, text in updates.items():
        page.write_text(text, encoding="utf-8")
    return 0

if __name__ == "__main__":
    sys.exit(main())
