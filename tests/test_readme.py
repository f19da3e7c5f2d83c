"""The figure tables of README.md and docs/*.md are the artifacts' own tables (tools/readme_tables.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.readme_tables import main, pages, refreshed

ROOT = Path(__file__).resolve().parents[1]


def test_blocks_are_replaced_by_their_files(tmp_path: Path) -> None:
    (tmp_path / "t.md").write_text("| a |\n|---|\n| 1 |\n")
    text = "intro\n<!-- from t.md -->\n| a |\n|---|\n| 0 |\n<!-- end -->\nafter\n"
    new, changed = refreshed(text, tmp_path)
    assert changed == ["t.md"] and new == "intro\n<!-- from t.md -->\n| a |\n|---|\n| 1 |\n<!-- end -->\nafter\n"
    assert refreshed(new, tmp_path) == (new, [])


def test_a_block_without_its_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(FileNotFoundError, match="missing.md"):
        refreshed("<!-- from missing.md -->\n<!-- end -->\n", tmp_path)
    (tmp_path / "README.md").write_text("<!-- from missing.md -->\n<!-- end -->\n")
    assert main(["--root", str(tmp_path)]) == 1
    assert "README.md" in capsys.readouterr().err


def test_check_mode_reports_every_page_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """README.md and a docs page: --check names the docs page's stale block, the copier then mends it alone."""
    (tmp_path / "t.md").write_text("new\n")
    readme, page = tmp_path / "README.md", tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    readme.write_text("<!-- from t.md -->\nnew\n<!-- end -->\n")
    page.write_text("# Page\n<!-- from t.md -->\nold\n<!-- end -->\n")
    assert pages(tmp_path) == [readme, page]
    assert main(["--root", str(tmp_path), "--check"]) == 1 and "old" in page.read_text()
    assert capsys.readouterr().err == f"{page}: the block from t.md differs from the file\n"
    assert main(["--root", str(tmp_path)]) == 0
    assert page.read_text() == "# Page\n<!-- from t.md -->\nnew\n<!-- end -->\n"
    assert main(["--root", str(tmp_path), "--check"]) == 0


def test_the_repository_pages_are_current() -> None:
    texts = {page: page.read_text(encoding="utf-8") for page in pages(ROOT)}
    changed = {page.name: refreshed(text, ROOT)[1] for page, text in texts.items()}
    assert any("<!-- from " in text for text in texts.values())
    assert not any(changed.values()), f"run `python -m tools.readme_tables`: {changed}"
