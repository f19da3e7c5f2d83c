"""tools.code_deps: the files each stage command runs, from its imports, and dvc.yaml kept equal to them."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from tools.code_deps import check, code_deps, collapse, main, module_closure, stage_code_deps

REPO = Path(__file__).resolve().parents[1]

# A tiny repository: `crf` is a command of the real table; its fake module exercises each kind of import.
FAKE_TREE = {
    "stages/__init__.py": "",
    "stages/__main__.py": "from stages.app import app\n\napp()\n",
    # The real app imports stage modules by name, through importlib: that must not count as importing them.
    "stages/app.py": "import importlib\n\nimport typer\n\n\ndef load(name):\n"
                     "    return importlib.import_module(f'stages.{name}')\n",
    "stages/crf.py": """
        import numpy as np  # third party: ignored
        from numpy import linalg  # third party, from-import: ignored

        from dgcn import storage  # `from package import submodule`
        from dgcn.metrics import scores  # top-level absolute import of a function

        from . import helpers  # relative import of a sibling module


        def main():
            from dgcn.lazy import thing  # import inside a function

            return thing
        """,
    "stages/helpers.py": "import os\n\nimport dgcn.deep.a.b.c as c  # runs every __init__.py on the way\n",
    "stages/export.py": "from dgcn.unused import nothing\n",
    "stages/unused.py": "",
    "dgcn/__init__.py": "",
    "dgcn/metrics.py": "from .core.maths import add  # relative import into a subpackage\n\nscores = add\n",
    "dgcn/core/__init__.py": "",
    "dgcn/core/maths.py": "def add(a, b):\n    return a + b\n",
    "dgcn/storage/__init__.py": "from .zarr_store import Store\n",
    "dgcn/storage/zarr_store.py": "import zarr\n\nfrom ..storage.sub import deep\n\nStore = deep\n",
    "dgcn/storage/sub/__init__.py": "",
    "dgcn/storage/sub/deep.py": "from ... import lazy  # three levels up: the package dgcn\n",
    "dgcn/lazy.py": "thing = 1\n",
    "dgcn/deep/__init__.py": "",
    "dgcn/deep/a/__init__.py": "",
    "dgcn/deep/a/other.py": "",
    "dgcn/deep/a/b/__init__.py": "",
    "dgcn/deep/a/b/c.py": "",
    "dgcn/deep/a/b/unused.py": "",
    "dgcn/unused.py": "nothing = None\n",
    "dgcn/data/readme.txt": "not code",
    "tests/test_fake.py": "import dgcn.unused\n",
}

FAKE_CRF_DEPS = [
    "dgcn/__init__.py",
    "dgcn/core",  # every .py below it is used: one entry
    "dgcn/deep/__init__.py",
    "dgcn/deep/a/__init__.py",
    "dgcn/deep/a/b/__init__.py",
    "dgcn/deep/a/b/c.py",
    "dgcn/lazy.py",
    "dgcn/metrics.py",
    "dgcn/storage",  # nested sub-package included
    "stages/__init__.py",
    "stages/__main__.py",
    "stages/app.py",
    "stages/crf.py",
    "stages/helpers.py",
]


def write_tree(root: Path, files: dict[str, str]) -> Path:
    """Write `files` (path -> text) under `root`; `root`."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


@pytest.fixture
def fake_repo(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "repo", FAKE_TREE)


def test_code_deps_follow_every_kind_of_import(fake_repo: Path) -> None:
    assert code_deps("crf", fake_repo) == FAKE_CRF_DEPS


def test_the_app_table_is_not_followed(fake_repo: Path) -> None:
    deps = code_deps("crf", fake_repo)
    assert "stages/export.py" not in deps and "dgcn/unused.py" not in deps
    assert "dgcn/unused.py" in code_deps("export", fake_repo)  # but a command does reach its own module's imports


def test_closure_holds_each_file_of_an_import_chain(fake_repo: Path) -> None:
    files = {path.relative_to(fake_repo).as_posix() for path in module_closure(["dgcn.deep.a.b.c"], fake_repo)}
    assert files == {"dgcn/__init__.py", "dgcn/deep/__init__.py", "dgcn/deep/a/__init__.py",
                     "dgcn/deep/a/b/__init__.py", "dgcn/deep/a/b/c.py"}


def test_third_party_modules_are_ignored(fake_repo: Path) -> None:
    # A folder named like a third-party module, outside the packages, is no code dep either.
    write_tree(fake_repo, {"numpy/__init__.py": "", "zarr.py": ""})
    deps = code_deps("crf", fake_repo)
    assert deps == FAKE_CRF_DEPS


def test_folders_collapse_only_when_every_file_is_used(tmp_path: Path) -> None:
    repo = write_tree(tmp_path, {"dgcn/__init__.py": "", "dgcn/a/__init__.py": "", "dgcn/a/x.py": "",
                                 "dgcn/a/deeper/y.py": "", "dgcn/b/__init__.py": "", "dgcn/b/z.py": ""})
    every = list(repo.rglob("*.py"))
    assert collapse(every, repo) == ["dgcn"]
    without_y = [path for path in every if path.name != "y.py"]
    assert collapse(without_y, repo) == ["dgcn/__init__.py", "dgcn/a/__init__.py", "dgcn/a/x.py", "dgcn/b"]


def test_unknown_command_and_missing_module_are_errors(fake_repo: Path) -> None:
    with pytest.raises(KeyError, match="unknown command"):
        code_deps("no-such-command", fake_repo)
    with pytest.raises(FileNotFoundError, match="stages.evaluate"):
        code_deps("evaluate", fake_repo)


def fake_dvc_yaml(repo: Path, crf_deps: list[str]) -> Path:
    """A dvc.yaml with a plain, a foreach and a matrix stage, all running `crf`, plus a stage that is no command."""
    stages = {
        "crf": {"cmd": "python -m stages crf --out artifacts/crf", "deps": [*crf_deps, "data/input"]},
        "crf_each": {"foreach": ["a", "b"], "do": {"cmd": "python -m stages crf --out artifacts/${item}",
                                                   "deps": [*crf_deps, "data/${item}"]}},
        "crf_matrix": {"matrix": {"name": ["a"]}, "cmd": "python -m stages crf --out ${item.name}",
                       "deps": [*crf_deps, "data/${item.name}"]},
        "download": {"cmd": "curl -o data/input https://example.org", "outs": ["data/input"]},
    }
    path = repo / "dvc.yaml"
    path.write_text(yaml.safe_dump({"stages": stages}))
    return path


def test_stage_code_deps_reads_plain_foreach_and_matrix_stages(fake_repo: Path) -> None:
    dvc_yaml = fake_dvc_yaml(fake_repo, ["stages/crf.py", "dgcn", "stages/"])
    assert stage_code_deps(dvc_yaml) == {stage: ("crf", ["stages/crf.py", "dgcn", "stages"])
                                         for stage in ("crf", "crf_each", "crf_matrix")}


def test_check_agrees_with_generated_deps(fake_repo: Path) -> None:
    assert check(fake_dvc_yaml(fake_repo, FAKE_CRF_DEPS), fake_repo) == []
    assert main(["--repo", str(fake_repo), "--check", str(fake_repo / "dvc.yaml")]) == 0


def test_check_lists_missing_and_extra(fake_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    listed = [dep for dep in FAKE_CRF_DEPS if dep != "dgcn/metrics.py"] + ["dgcn/unused.py"]
    dvc_yaml = fake_dvc_yaml(fake_repo, listed)
    problems = check(dvc_yaml, fake_repo)
    assert len(problems) == 3
    assert problems[0].splitlines() == ["crf (python -m stages crf):", "  missing: dgcn/metrics.py",
                                        "  extra:   dgcn/unused.py"]
    assert main(["--repo", str(fake_repo), "--check", str(dvc_yaml)]) == 1
    assert "missing: dgcn/metrics.py" in capsys.readouterr().err


def test_cli_prints_a_yaml_block_per_command(fake_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for module in ("synthesize", "prepare", "cues", "train_dgcn", "evaluate", "retrain"):
        (fake_repo / "stages" / f"{module}.py").write_text("")
    assert main(["--repo", str(fake_repo)]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert list(printed) == ["synthesize", "prepare", "cues", "train-dgcn", "export", "crf", "retrain", "evaluate"]
    assert printed["crf"] == FAKE_CRF_DEPS


def test_a_tool_is_no_stage(fake_repo: Path) -> None:
    # `report` runs tools.report: no dvc stage may run it, and `tools` is not followed even when a stage imports it
    write_tree(fake_repo, {"tools/__init__.py": "", "tools/report.py": "import dgcn.unused\n",
                           "stages/crf.py": "import tools.report\n"})
    assert code_deps("crf", fake_repo) == ["stages/__init__.py", "stages/__main__.py", "stages/app.py", "stages/crf.py"]
    path = fake_repo / "dvc.yaml"
    path.write_text(yaml.safe_dump({"stages": {"summary": {"cmd": "python -m stages report --summary s.json"}}}))
    assert check(path, fake_repo) == ["summary: `report` runs tools.report, a tool, not a pipeline stage"]


def test_repository_dvc_yaml_lists_exactly_the_generated_code_deps() -> None:
    dvc_yaml = REPO / "dvc.yaml"
    assert stage_code_deps(dvc_yaml), "no stage of dvc.yaml runs `python -m stages <command>`"
    problems = check(dvc_yaml, REPO)
    assert not problems, ("dvc.yaml's code deps differ from the code the stages run; paste the output of "
                          "`python -m tools.code_deps` into each stage's deps (`python -m tools.code_deps --check "
                          "dvc.yaml` checks):\n" + "\n".join(problems))


def test_a_section_schema_is_a_code_dep_of_the_stages_reading_that_section_alone() -> None:
    # editing stages/schemas/crf.py must make `dvc status` report the crf stage and none before it
    document = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    deps = stage_code_deps(REPO / "dvc.yaml")
    readers = {}
    for module in sorted((REPO / "stages" / "schemas").glob("*.py")):
        if module.stem in ("__init__", "network"):  # network: parts of the sections of the training stages
            continue
        readers[module.stem] = {stage for stage, entry in document.items()
                                if module.stem in entry.get("do", entry).get("params", [])}
        importers = {stage for stage, (_, listed) in deps.items() if f"stages/schemas/{module.name}" in listed}
        assert importers == readers[module.stem], module.name
    assert readers["crf"] == {"crf"} and readers["dense_crf"] == {"train_dgcn", "crf", "evaluate"}
    assert readers["retrain"] == {"retrain", "upper_bound"}


def test_no_stage_runs_a_tool() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    listed = [dep for entry in stages.values() for dep in entry.get("do", entry).get("deps", [])]
    assert listed and not [dep for dep in listed if dep.split("/")[0] == "tools"]
