"""Keep the README's figure tables equal to the artifacts they come from.

A table in README.md sits between `<!-- from <path> -->` and `<!-- end -->`, where <path> (relative to the repository
root) is a markdown file a command wrote, such as `artifacts/synthetic/ablation/table.md`. `python -m
stages.readme` copies each file into its block; `--check` exits 1 naming every block that differs (a test runs it).
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
            raise FileNotFoundError(f"README block names {match['path']}, which does not exist; run the command that "
                                    "writes it")
        body = source.read_text(encoding="utf-8")
        if body != match["body"]:
            changed.append(match["path"])
        return match.group(1) + body + match.group(4)

    return BLOCK.sub(fill, text), changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stages.readme", description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--check", action="store_true", help="only report blocks that differ; exit 1 if any")
    args = parser.parse_args(argv)
    text, changed = refreshed(args.readme.read_text(encoding="utf-8"), args.readme.parent)
    for path in changed:
        print(f"{args.readme}: the block from {path} differs from the file", file=sys.stderr)
    if not args.check:
        args.readme.write_text(text, encoding="utf-8")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
