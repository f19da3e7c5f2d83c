"""The README's figure tables are the artifacts' own tables (stages/readme.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stages.readme import main, refreshed

ROOT = Path(__file__).resolve().parents[1]


def test_blocks_are_replaced_by_their_files(tmp_path: Path) -> None:
    (tmp_path / "t.md").write_text("| a |\n|---|\n| 1 |\n")
    text = "intro\n<!-- from t.md -->\n| a |\n|---|\n| 0 |\n<!-- end -->\nafter\n"
    new, changed = refreshed(text, tmp_path)
    assert changed == ["t.md"] and new == "intro\n<!-- from t.md -->\n| a |\n|---|\n| 1 |\n<!-- end -->\nafter\n"
    assert refreshed(new, tmp_path) == (new, [])


def test_a_block_without_its_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.md"):
        refreshed("<!-- from missing.md -->\n<!-- end -->\n", tmp_path)


def test_check_mode_reports_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "t.md").write_text("new\n")
    readme = tmp_path / "README.md"
    readme.write_text("<!-- from t.md -->\nold\n<!-- end -->\n")
    assert main(["--readme", str(readme), "--check"]) == 1 and "old" in readme.read_text()
    assert main(["--readme", str(readme)]) == 0 and readme.read_text() == "<!-- from t.md -->\nnew\n<!-- end -->\n"


def test_the_repository_readme_is_current() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    _, changed = refreshed(text, ROOT)
    assert "<!-- from " in text and not changed, f"run `python -m stages.readme`: {changed}"
