"""The code each stage runs: the repository files `python -m stages <command>` imports, for dvc.yaml's `deps`.

Imports are read with `ast`, not by importing, so this runs without torch and sees imports inside functions too.
Only modules of the packages `dgcn` and `stages` count; third-party and standard-library imports are not code deps,
nor are the modules of `tools`, which no stage runs.

    python -m tools.code_deps                  # every stage's code deps, to paste into dvc.yaml
    python -m tools.code_deps --check dvc.yaml # exit 1 listing, per stage, the missing and the extra code deps
"""

from __future__ import annotations

import argparse
import ast
import functools
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import yaml

from stages.app import COMMANDS

PACKAGES = ("dgcn", "stages")
# What `python -m stages <command>` runs besides the command's module; app.py's table is not followed on purpose
# (it imports stage modules lazily, by name), so each command reaches only its own module.
ENTRY_MODULES = ("stages.__main__", "stages.app")
STAGE_CMD = re.compile(r"\bpython3?\s+-m\s+stages\s+([\w-]+)")


def module_file(name: str, repo: Path) -> Path | None:
    """The file of module `name` (a package's `__init__.py`) inside `repo`, or None when it is not there."""
    base = repo.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_name(base.name + ".py")):
        if candidate.is_file():
            return candidate
    return None


def _module_name(file: Path, repo: Path) -> str:
    """`dgcn/models/__init__.py` -> `dgcn.models`; `dgcn/cam.py` -> `dgcn.cam`."""
    parts = list(file.relative_to(repo).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_names(file: Path, repo: Path) -> tuple[str, ...]:
    """Every module name an import statement anywhere in `file` may load, relative imports made absolute.

    `from X import Y` gives both X and X.Y, since Y may be a submodule; names that are not modules are dropped
    later, when they resolve to no file.
    """
    # Parsing dominates the run time and every command shares most modules: parse each file version once.
    return _parse_imports(file, repo, file.stat().st_mtime_ns)


@functools.cache
def _parse_imports(file: Path, repo: Path, mtime_ns: int) -> tuple[str, ...]:
    """`_imported_names` for one version (modification time) of `file`."""
    return tuple(_walk_imports(file, repo))


def _walk_imports(file: Path, repo: Path) -> Iterator[str]:
    """The import statements of `file`, as absolute module names (see `_imported_names`)."""
    name = _module_name(file, repo)
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), filename=str(file))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".") if package else []
                if node.level - 1 >= len(anchor):
                    continue  # a relative import above the top-level package: Python itself would fail
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            if base:
                yield base
            yield from (f"{base}.{alias.name}" if base else alias.name for alias in node.names if alias.name != "*")


def _with_parents(name: str) -> Iterator[str]:
    """Importing `a.b.c` runs `a`, `a.b` and `a.b.c`, in that order."""
    parts = name.split(".")
    for end in range(1, len(parts) + 1):
        yield ".".join(parts[:end])


def module_closure(modules: Iterable[str], repo: Path, packages: Iterable[str] = PACKAGES) -> set[Path]:
    """The files of `modules` and of everything they import, transitively, inside `packages` of `repo`."""
    packages = tuple(packages)
    files: set[Path] = set()
    pending = list(modules)
    seen: set[str] = set()
    while pending:
        for name in _with_parents(pending.pop()):
            if name in seen or name.split(".")[0] not in packages:
                continue
            seen.add(name)
            file = module_file(name, repo)
            if file is None:
                continue  # an attribute imported with `from X import Y`, or a module that is not in the repo
            files.add(file)
            pending.extend(_imported_names(file, repo))
    return files


def collapse(files: Iterable[Path], repo: Path, packages: Iterable[str] = PACKAGES) -> list[str]:
    """Sorted repo-relative POSIX paths; a folder whose .py files (recursively) are all in `files` becomes one entry.

    The highest such folder wins, so a wholly used `dgcn/models` is listed once rather than file by file.
    """
    repo = repo.resolve()
    files = {file.resolve() for file in files}
    folders: list[Path] = []
    for root in packages:
        # Shallowest first, so a folder inside one already collapsed is skipped.
        for folder in sorted(_folders(repo / root), key=lambda path: len(path.parts)):
            if any(done in folder.parents for done in folders):
                continue
            sources = set(_py_files(folder))
            if sources and sources <= files:
                folders.append(folder)
    loose = [file for file in files if not any(folder in file.parents for folder in folders)]
    return sorted(path.relative_to(repo).as_posix() for path in [*folders, *loose])


def _py_files(folder: Path) -> list[Path]:
    """The .py files under `folder`, recursively, skipping caches and hidden folders."""
    return [file.resolve() for file in folder.rglob("*.py")
            if not any(part == "__pycache__" or part.startswith(".") for part in file.relative_to(folder).parts)]


def _folders(root: Path) -> list[Path]:
    """`root` and every folder under it (caches and hidden folders excluded)."""
    if not root.is_dir():
        return []
    return [root, *(path for path in root.rglob("*") if path.is_dir() and not any(
        part == "__pycache__" or part.startswith(".") for part in path.relative_to(root).parts))]


def is_stage(command: str) -> bool:
    """Whether `command` is a pipeline stage (a module of `stages`) rather than a tool around it, which no dvc stage
    runs (`ablate` drives dvc experiments, `report` prints the evaluate stage's summary)."""
    return COMMANDS[command][0].split(".")[0] == "stages"


def code_deps(command: str, repo: Path) -> list[str]:
    """The repository files (folders collapsed) that `python -m stages <command>` runs, for dvc.yaml's `deps`."""
    if command not in COMMANDS:
        raise KeyError(f"unknown command {command!r}; commands: {', '.join(COMMANDS)}")
    repo = Path(repo).resolve()
    module = COMMANDS[command][0]
    if module_file(module, repo) is None:
        raise FileNotFoundError(f"command {command!r}: module {module} has no file in {repo}")
    return collapse(module_closure([*ENTRY_MODULES, module], repo), repo)


def stage_code_deps(dvc_yaml: Path) -> dict[str, tuple[str, list[str]]]:
    """Per stage of a dvc.yaml running `python -m stages <command>`: (command, the code deps it lists)."""
    document = yaml.safe_load(Path(dvc_yaml).read_text(encoding="utf-8")) or {}
    found: dict[str, tuple[str, list[str]]] = {}
    for stage, entry in (document.get("stages") or {}).items():
        definition = entry.get("do", {}) if "foreach" in entry else entry  # matrix stages keep cmd/deps in place
        cmd = definition.get("cmd", "")
        match = STAGE_CMD.search(" ".join(cmd) if isinstance(cmd, list) else str(cmd))
        if match is None:
            continue  # not a `stages` command: nothing to generate for it
        deps = [dep.rstrip("/") for dep in definition.get("deps") or [] if isinstance(dep, str) and _is_code(dep)]
        found[stage] = (match.group(1), deps)
    return found


def _is_code(dep: str) -> bool:
    """A dvc.yaml dep inside one of the packages (the whole package folder included); `data/${item}` is not."""
    return any(dep.rstrip("/") == package or dep.startswith(f"{package}/") for package in PACKAGES)


def check(dvc_yaml: Path, repo: Path) -> list[str]:
    """A report per stage whose listed code deps differ from the generated ones; empty when all agree."""
    problems = []
    for stage, (command, listed) in stage_code_deps(dvc_yaml).items():
        if command in COMMANDS and not is_stage(command):
            problems.append(f"{stage}: `{command}` runs {COMMANDS[command][0]}, a tool, not a pipeline stage")
            continue
        try:
            wanted = code_deps(command, repo)
        except (KeyError, FileNotFoundError) as error:
            problems.append(f"{stage}: {error}")
            continue
        missing = sorted(set(wanted) - set(listed))
        extra = sorted(set(listed) - set(wanted))
        if missing or extra:
            problems.append("\n".join([f"{stage} (python -m stages {command}):",
                                       f"  missing: {', '.join(missing) or '-'}",
                                       f"  extra:   {', '.join(extra) or '-'}"]))
    return problems


def render(repo: Path) -> tuple[str, list[str]]:
    """The YAML block of every stage command's code deps, and the errors of commands that could not be resolved."""
    lines, errors = [], []
    for command in filter(is_stage, COMMANDS):
        try:
            paths = code_deps(command, repo)
        except FileNotFoundError as error:
            errors.append(str(error))
            continue
        lines.append(f"{command}:")
        lines.extend(f"  - {path}" for path in paths)
    return "\n".join(lines), errors


def main(argv: list[str] | None = None) -> int:
    """Print every stage's code deps, or with --check compare them with a dvc.yaml; the exit status."""
    parser = argparse.ArgumentParser(prog="python -m tools.code_deps", description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path("."), help="repository root (default: current folder)")
    parser.add_argument("--check", type=Path, metavar="DVC_YAML", help="compare with this dvc.yaml; exit 1 if "
                                                                        "any stage lists other code deps")
    args = parser.parse_args(argv)
    if args.check is not None:
        problems = check(args.check, args.repo)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print(f"paste the output of `python -m tools.code_deps` into {args.check}'s deps", file=sys.stderr)
        return 1 if problems else 0
    text, errors = render(args.repo)
    print(text)
    for error in errors:
        print(f"skipped: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
