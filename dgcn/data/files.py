"""Reading the files of a data set: images, label masks, one-line warnings; every failure names the file."""

from __future__ import annotations

import sys
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
from PIL import Image

from dgcn.data.palette import IGNORE_INDEX
from dgcn.errors import InputError


class DatasetError(InputError):
    """The data set on disk is not usable; the message names the first bad file."""


Item = TypeVar("Item")
Info = TypeVar("Info")


@dataclass(frozen=True)
class SampleCheck:
    """How a data set's `validate` checks each image.

    decode: decode every image and mask in full and read the masks' values (what prepare does); False: read the sizes
    from the file headers alone (seconds for 10,000 images): a missing file, a file that is no image or a mask of
    another size fails, a damaged body or a mask value out of range does not, and a masked image's classes stay
    unknown (empty).
    report: None raises the first bad image's DatasetError; a callable is handed each one, and the image left out.
    """

    decode: bool = True
    report: Callable[[DatasetError], None] | None = None

    def sample(self, read: Callable[[Item, bool], Info], item: Item) -> Info | None:
        """read(item, decode): one image's record; None when it raised a DatasetError that `report` took."""
        try:
            return read(item, self.decode)
        except DatasetError as error:
            if self.report is None:
                raise
            self.report(error)
            return None


STRICT = SampleCheck()  # prepare's: every image decoded, the first bad one raised


class Reader(Protocol):
    """What the stages read of a data set's split: images, and masks where `has_mask`."""

    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int: ...

    @property
    def mask_source(self) -> Path | None: ...

    def image(self, name: str) -> np.ndarray: ...

    def mask(self, name: str) -> np.ndarray: ...

    def has_mask(self, name: str) -> bool: ...


def warn(message: str) -> None:
    """One line on stderr: a problem in the data that is skipped, not fatal."""
    print(f"warning: {' '.join(message.split())}", file=sys.stderr)


def open_image(path: Path, mode: str | None = None, *, decode: bool = True) -> Image.Image:
    """Open and fully decode an image (converted to `mode` if given, 16-bit grey scaled to 8 bits first) so corrupt
    files fail here, naming the file; decode=False reads its header alone (size, mode; `mode` unused): a file that is
    no image fails, a damaged body does not."""
    try:
        with warnings.catch_warnings():  # e.g. "Corrupt EXIF data": the decode either fails below or is usable
            warnings.simplefilter("ignore")
            image = Image.open(path)
            if not decode:
                return image
            image.load()
            return image if mode is None else eight_bit(image).convert(mode)
    except FileNotFoundError as error:
        raise DatasetError(f"image not found: {path}") from error
    except Exception as error:  # a decoder fed a damaged file raises many types (OSError, ValueError,
        # SyntaxError, struct.error, EOFError, DecompressionBombError ...): all of them mean a bad file
        reason = " ".join(str(error).split()) or type(error).__name__
        raise DatasetError(f"unreadable or corrupt image: {path} ({reason})") from error


def eight_bit(image: Image.Image) -> Image.Image:
    """A 16-bit grey image as 8-bit grey ("L"), its top byte as Pillow keeps of 16-bit colour: Pillow's own
    conversion of 16-bit grey clips at 255 (nearly all white); other images as they are."""
    if not image.mode.startswith("I;16"):
        return image
    return Image.fromarray((np.asarray(image) >> 8).astype(np.uint8))


def read_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB (grey and RGBA converted), a writable array (torch and pydensecrf refuse read-only ones)."""
    return np.array(open_image(path, "RGB"))


def read_mask(path: Path, num_classes: int) -> np.ndarray:
    """(H, W) uint8 class indices of a palette or grey PNG, 255 = ignore; checked against the class range."""
    if not path.is_file():
        raise DatasetError(f"mask not found: {path}")
    image = open_image(path)
    mask = np.asarray(image)
    if mask.ndim != 2 or mask.dtype.kind not in "ui":
        raise DatasetError(f"mask is not a single-channel (palette or grey) image of integer class indices: "
                           f"{path} has mode {image.mode}")
    bad = np.unique(mask[(mask >= num_classes) & (mask != IGNORE_INDEX)])
    if bad.size:
        raise DatasetError(f"mask values {bad.tolist()} outside the class range 0..{num_classes - 1} "
                           f"(and {IGNORE_INDEX} = ignore): {path}")
    return mask.astype(np.uint8, copy=False)


def image_size(path: Path, *, decode: bool = True) -> tuple[int, int]:
    """(height, width) of an image, decoded in full so that a corrupt file fails here (decode=False: its header's)."""
    # converted too: every later stage reads it as RGB
    with open_image(path, "RGB" if decode else None, decode=decode) as image:
        width, height = image.size
    return height, width


def check_mask_size(mask_size: tuple[int, int], size: tuple[int, int], path: Path) -> None:
    """DatasetError naming the mask when its (height, width) differs from its image's."""
    if tuple(mask_size) != tuple(size):
        raise DatasetError(f"mask size {mask_size[1]}x{mask_size[0]} differs from its image {size[1]}x{size[0]}: "
                           f"{path}")


def checked_mask(path: Path, size: tuple[int, int], num_classes: int, decode: bool) -> np.ndarray | None:
    """The mask at `path` of an image of (height, width) `size`: read in full and checked (values in the class range,
    its size); decode=False: only its header's size checked, and None."""
    if not decode:
        check_mask_size(image_size(path, decode=False), size, path)
        return None
    mask = read_mask(path, num_classes)
    check_mask_size(mask.shape, size, path)
    return mask


def check_file_name(name: str, where: str) -> None:
    """An id becomes a path under an images folder: a folder or a NUL in it would read some other file, or crash."""
    if name in ("", ".", "..") or any(character in name for character in "/\\\0"):
        raise DatasetError(f"bad image id {name!r} in {where}: an id is a file name without folders")


def file_stems(names: Sequence[str], where: str) -> list[str]:
    """The file stem of each image id (`a.jpg` -> `a`), as masks, seeds and exported labels are named; a
    DatasetError naming `where` when two ids share one."""
    stems = [Path(name).stem for name in names]
    if len(set(stems)) < len(stems):
        twin = next(stem for stem, count in Counter(stems).items() if count > 1)
        raise DatasetError(f"{where}: two image ids share the file stem {twin!r}; give the images distinct stems")
    return stems


def listing(names: list[str], limit: int = 10) -> str:
    """The first `limit` names, comma-separated, with the count of the rest."""
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"
