"""Your own data set: a folder of images, a labels file of image-level tags, an optional class list, optional masks.

Labels: CSV with the header `image,tags` (tags separated by spaces or `;`), or JSON lines `{"image": ..., "tags":
[...]}` (tags a list or a string as in the CSV). An image id is its file name in the images folder; its mask, if any,
is `<masks>/<stem>.png` (palette or grey, 255 = ignore). Class 0 is background, implicit; the foreground classes come
from a class list file (one name per line) or, sorted, from the tags. An image without tags is a background-only image
(no object class), as a VOC image whose mask holds only background.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dgcn.data.files import (
    DatasetError,
    STRICT,
    SampleCheck,
    check_file_name,
    checked_mask,
    image_size,
    listing,
    read_mask,
    read_rgb,
    warn,
)
from dgcn.data.voc import SampleInfo

BACKGROUND = "background"
_TAG_SEPARATORS = re.compile(r"[;\s]+")


@dataclass(frozen=True)
class LabelRow:
    """One image of the labels file: its id, its tags, and where it was read (`file:line`)."""

    name: str
    tags: tuple[str, ...]
    where: str


def read_labels(path: Path) -> list[LabelRow]:
    """The images of a labels file (CSV or JSON lines, by content), in file order; one without tags is background-only.
    A duplicate image is an error naming both lines; a file where no image has a tag is an error."""
    text = _read_text(path, "labels file")
    first = next((line for line in text.splitlines() if line.strip()), "")
    rows = _json_rows(path, text) if first.lstrip().startswith("{") else _csv_rows(path, text)
    kept: list[LabelRow] = []
    seen: dict[str, str] = {}
    for row in rows:
        check_file_name(row.name, row.where)
        if row.name in seen:
            raise DatasetError(f"{row.where}: duplicate row for image {row.name!r} (first at {seen[row.name]})")
        seen[row.name] = row.where
        kept.append(row)
    if not any(row.tags for row in kept):
        raise DatasetError(f"{path}: no image with tags")
    return kept


def _read_text(path: Path, what: str) -> str:
    if not path.is_file():
        raise DatasetError(f"{what} not found: {path}")
    try:
        return path.read_bytes().decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        raise DatasetError(f"{what} is not UTF-8 text: {path} (byte {error.start})") from None


def _split_tags(value: str) -> tuple[str, ...]:
    return tuple(tag for tag in _TAG_SEPARATORS.split(value.strip()) if tag)


def _csv_rows(path: Path, text: str) -> Iterator[LabelRow]:
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if [cell.strip().lower() for cell in header or []] != ["image", "tags"]:
        raise DatasetError(f"{path}:1: expected the header 'image,tags' (or JSON lines), got {header!r}")
    for cells in reader:
        where = f"{path}:{reader.line_num}"
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != 2:
            raise DatasetError(f"{where}: expected 2 columns (image,tags), got {len(cells)}")
        yield LabelRow(cells[0].strip(), _split_tags(cells[1]), where)


def _json_rows(path: Path, text: str) -> Iterator[LabelRow]:
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{path}:{number}"
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DatasetError(f"{where}: not a JSON object ({error.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("image"), str):
            raise DatasetError(f"{where}: expected an object with a string 'image' and 'tags'")
        tags = record.get("tags", [])
        if isinstance(tags, str):
            tags = _split_tags(tags)
        elif not (isinstance(tags, list) and all(isinstance(tag, str) for tag in tags)):
            raise DatasetError(f"{where}: 'tags' must be a list of strings or a string")
        yield LabelRow(record["image"].strip(), tuple(tag.strip() for tag in tags if tag.strip()), where)


def read_class_list(path: Path) -> tuple[str, ...]:
    """Background followed by the file's class names (one per line; blank lines and `#` comments skipped)."""
    names: dict[str, int] = {}
    for number, line in enumerate(_read_text(path, "class list").splitlines(), start=1):
        name = line.split("#", 1)[0].strip()
        if not name:
            continue
        if name == BACKGROUND:
            raise DatasetError(f"{path}:{number}: '{BACKGROUND}' is class 0, implicit: list the object classes only")
        if name in names:
            raise DatasetError(f"{path}:{number}: duplicate class {name!r} (first at line {names[name]})")
        names[name] = number
    if not names:
        raise DatasetError(f"{path}: lists no class")
    return (BACKGROUND, *names)


def derived_classes(rows: list[LabelRow]) -> tuple[str, ...]:
    """Background followed by every tag used, sorted."""
    for row in rows:
        if BACKGROUND in row.tags:
            raise DatasetError(f"{row.where}: '{BACKGROUND}' is class 0, implicit: not a tag")
    return (BACKGROUND, *sorted({tag for row in rows for tag in row.tags}))


def split_rows(rows: list[LabelRow], lists: tuple[Path, Path] | None, val_fraction: float,
               seed: int) -> tuple[list[LabelRow], list[LabelRow]]:
    """(train, val) rows: from two list files of image ids (one per line), or a seeded random `val_fraction`. The
    train split needs a tagged image (the others may be background-only)."""
    labels = rows[0].where.rsplit(":", 1)[0]
    if lists is None:
        if len(rows) < 2:
            raise DatasetError(f"{labels}: 2 images at least are needed for a train and a val split")
        order = np.random.default_rng(seed).permutation(len(rows))
        count = min(max(round(len(rows) * val_fraction), 1), len(rows) - 1)
        val_rows = set(order[:count].tolist())
        train = [row for i, row in enumerate(rows) if i not in val_rows]
        val = [row for i, row in enumerate(rows) if i in val_rows]
        source = f"the train split drawn from {labels} (seed {seed})"
    else:
        by_name = {row.name: row for row in rows}
        train, val = (_listed(path, by_name) for path in lists)
        shared = sorted({row.name for row in train} & {row.name for row in val})
        if shared:
            raise DatasetError(f"{len(shared)} ids in both {lists[0]} and {lists[1]}: {listing(shared)}")
        source = str(lists[0])
    if not any(row.tags for row in train):
        raise DatasetError(f"no foreground in {source}: none of its {len(train)} images has a tag")
    return train, val


def _listed(path: Path, by_name: dict[str, LabelRow]) -> list[LabelRow]:
    """The rows a split list names, in its order; an id the labels file lacks is an error naming the line."""
    rows, seen = [], set()
    for number, line in enumerate(_read_text(path, "split list").splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        if name not in by_name:
            raise DatasetError(f"{path}:{number}: image {name!r} has no row in the labels file")
        if name in seen:
            raise DatasetError(f"{path}:{number}: duplicate image {name!r}")
        seen.add(name)
        rows.append(by_name[name])
    if not rows:
        raise DatasetError(f"empty split: {path} lists no images")
    return rows


class FolderDataset:
    """Images `<root>/<images>/<id>` and optional masks `<root>/<masks>/<stem of id>.png`."""

    def __init__(self, root: Path, class_names: tuple[str, ...], images: str, masks: str | None) -> None:
        self.root = Path(root)
        self.class_names = tuple(class_names)
        self.images, self.masks = images, masks
        if not self.root.is_dir():
            raise DatasetError(f"data root not found: {self.root}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def image_path(self, name: str) -> Path:
        return self.root / self.images / name

    def mask_path(self, name: str) -> Path | None:
        return None if self.masks is None else self.root / self.masks / f"{Path(name).stem}.png"

    @property
    def mask_source(self) -> Path | None:
        """Where the masks come from (a resumable stage hashes it); None without masks."""
        return None if self.masks is None else self.root / self.masks

    def has_mask(self, name: str) -> bool:
        path = self.mask_path(name)
        return path is not None and path.is_file()

    def image(self, name: str) -> np.ndarray:
        return read_rgb(self.image_path(name))

    def mask(self, name: str) -> np.ndarray:
        path = self.mask_path(name)
        if path is None:
            raise DatasetError(f"no masks folder for image {name!r}")
        return read_mask(path, self.num_classes)

    def validate(self, rows: list[LabelRow], check: SampleCheck = STRICT) -> list[SampleInfo]:
        """Check every image (and mask) and every tag; return what the manifest records (`check`: how, see
        SampleCheck)."""
        return [info for row in rows if (info := check.sample(self._sample, row)) is not None]

    def _sample(self, row: LabelRow, decode: bool) -> SampleInfo:
        """One image's record, its tags and files checked."""
        unknown = [tag for tag in row.tags if tag not in self.class_names[1:]]
        if unknown:
            raise DatasetError(f"{row.where}: tag {unknown[0]!r} is not in the class list")
        path = self.image_path(row.name)
        if not path.is_file():
            raise DatasetError(f"{row.where}: image not found: {path}")
        size = image_size(path, decode=decode)
        masked = self.has_mask(row.name)
        if masked:
            checked_mask(self.mask_path(row.name), size, self.num_classes, decode)
        classes = tuple(sorted({self.class_names.index(tag) for tag in row.tags}))
        return SampleInfo(row.name, *size, classes, masked)

    def check_masks(self, names: set[str]) -> None:
        """An error naming both images when two ids of one stem (`a.png`, `a.jpg`) share a mask file; one
        warning per mask file whose stem is no image id: it is not used."""
        if self.masks is None:
            return
        folder = self.root / self.masks
        if not folder.is_dir():
            raise DatasetError(f"masks folder not found: {folder}")
        stems: dict[str, str] = {}
        for name in sorted(names):
            first = stems.setdefault(Path(name).stem, name)
            if first != name and self.has_mask(name):
                raise DatasetError(f"images {self.image_path(first)} and {self.image_path(name)} share the mask "
                                   f"{self.mask_path(name)}: rename one of them")
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() == ".png" and path.stem not in stems:
                warn(f"{path}: mask for an unknown image (no image {path.stem}.* in the labels file); not used")
