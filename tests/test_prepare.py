"""The prepare stage on damaged data sets: one-line errors naming the file, nothing published; fuzzed by hypothesis.

The fuzz tests feed random and damaged images, masks, split lists, annotations and params to `prepare` (through the
command line) and to the params loader: only success or our one-line errors may come out, never a traceback.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from test_voc import mask_with, write_voc
from typer.testing import CliRunner

from stages.app import app
from stages.params import ParamsError, load_params
from tools.params_schema import SECTIONS

REPO = Path(__file__).resolve().parents[1]
# Bounded and repeatable: CI runs the same examples every time (a few seconds); the database would write into the
# repository. Raise max_examples and drop derandomize locally to search further.
FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
TRAIN, VAL = ["a", "b", "c"], ["d"]  # c has no mask: its labels come from its XML annotation


def make_dataset(root: Path) -> None:
    """A valid VOC-layout root: train a, b (masks) and c (annotation only), val d."""
    write_voc(root, {"a": mask_with([0, 15]), "b": mask_with([0, 12, 255]), "d": mask_with([0, 5])},
              annotations={"c": ["dog"]})
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(TRAIN) + "\n")
    (root / "ImageSets/Segmentation/val.txt").write_text("\n".join(VAL) + "\n")


def run_prepare(root: Path, out: Path, config: Path) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(app, ["prepare", "--root", str(root), "--out", str(out), "--config", str(config),
                                      "--defaults", str(REPO / "params.yaml")])
    return result.exit_code, result.output, result.exception


def assert_success_or_one_line(code: int, output: str, exception: BaseException | None, out: Path) -> None:
    """Success (the manifest published) or exit 1 with one `error:` line and nothing published; never a bug."""
    if code == 0:
        assert json.loads((out / "manifest.json").read_text())["splits"]["train"]["names"]
        return
    assert isinstance(exception, SystemExit), f"unexpected {exception!r}; output: {output}"
    assert code == 1 and len(output.splitlines()) == 1 and output.startswith("error: "), output
    assert not out.exists()


@pytest.fixture
def voc_config(tmp_path: Path) -> Path:
    path = tmp_path / "voc.yaml"
    path.write_text("prepare: {classes: voc, train_split: train, val_split: val}\n")
    return path


def test_prepare_reads_a_dataset_with_annotation_only_images(tmp_path: Path, voc_config: Path) -> None:
    make_dataset(tmp_path / "root")
    code, output, _ = run_prepare(tmp_path / "root", tmp_path / "out", voc_config)
    assert code == 0, output
    manifest = json.loads((tmp_path / "out/manifest.json").read_text())
    assert manifest["splits"]["train"]["classes"] == [[15], [12], [12]]
    assert (tmp_path / "out/contact_sheet.png").is_file()


@pytest.mark.parametrize(("train", "val", "message"), [
    ("a\nb\nc\n", "d\nb\na\n", "2 ids in both {root}/ImageSets/Segmentation/train.txt and "
                               "{root}/ImageSets/Segmentation/val.txt: a, b"),
    ("a\nb\nc\na\n", "d\n", "duplicate ids in {root}/ImageSets/Segmentation/train.txt: a"),
    ("\ufeffa\nb\xff\n", "d\n", "split list is not UTF-8 text: {root}/ImageSets/Segmentation/train.txt (byte 6: "
                                "b'\\xff')"),
])
def test_prepare_refuses_bad_split_lists_naming_file_and_ids(tmp_path: Path, voc_config: Path, train: str, val: str,
                                                             message: str) -> None:
    root = tmp_path / "root"
    make_dataset(root)
    (root / "ImageSets/Segmentation/train.txt").write_bytes(train.encode("utf-8").replace(b"\xc3\xbf", b"\xff"))
    (root / "ImageSets/Segmentation/val.txt").write_text(val)
    code, output, exception = run_prepare(root, tmp_path / "out", voc_config)
    assert_success_or_one_line(code, output, exception, tmp_path / "out")
    assert output == f"error: {message.format(root=root)}\n"


def test_prepare_refuses_a_split_without_foreground(tmp_path: Path, voc_config: Path) -> None:
    root = tmp_path / "root"
    make_dataset(root)
    Image.fromarray(mask_with([0, 255]), mode="L").save(root / "SegmentationClassAug/d.png")
    code, output, exception = run_prepare(root, tmp_path / "out", voc_config)
    assert output == (f"error: no foreground in {root}/ImageSets/Segmentation/val.txt: none of its 1 images contains "
                      f"an object class\n")
    assert_success_or_one_line(code, output, exception, tmp_path / "out")


def _encode(array: np.ndarray, mode: str, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buffer, format=fmt)
    return buffer.getvalue()


def _image_kinds() -> list[tuple[str, str]]:
    """(mode, format) pairs that PIL can write: images of unusual modes, in several containers."""
    kinds = []
    for mode in ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "YCbCr", "I;16", "I", "F"]:
        for fmt in ["PNG", "JPEG", "TIFF", "BMP", "GIF"]:
            try:
                _encode(np.zeros((2, 2, 3), np.uint8), mode, fmt)
            except (OSError, ValueError, KeyError):
                continue
            kinds.append((mode, fmt))
    return kinds


NOISE = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
KINDS = _image_kinds()
sizes = st.tuples(st.integers(1, 40), st.integers(1, 40))


@st.composite
def image_files(draw: st.DrawFn) -> bytes:
    """Random bytes, an image of an odd mode or size, or a valid image cut short."""
    kind = draw(st.sampled_from(["bytes", "odd", "truncated"]))
    if kind == "bytes":
        return draw(st.binary(max_size=600))
    mode, fmt = draw(st.sampled_from(KINDS))
    height, width = draw(sizes) if kind == "odd" else (20, 30)
    data = _encode(np.resize(NOISE, (height, width, 3)), mode, fmt)
    return data if kind == "odd" else data[: draw(st.integers(0, len(data) - 1))]


@st.composite
def mask_files(draw: st.DrawFn) -> bytes:
    """Label maps of any size, values in and out of the class range, in 8-bit, 16-bit, 32-bit, float, bit or RGB."""
    if draw(st.booleans()):
        return draw(image_files())
    height, width = draw(st.sampled_from([(20, 30), (30, 20)]) | sizes)
    values = draw(st.lists(st.sampled_from([0, 1, 7, 20, 21, 254, 255, 256, 65535]), min_size=1, max_size=4))
    array = np.resize(np.asarray(values), (height, width))
    mode = draw(st.sampled_from(["L", "P", "I;16", "I", "F", "1", "RGB"]))
    typed = {"I;16": array.astype(np.uint16), "I": array.astype(np.int32), "F": array.astype(np.float32),
             "1": array.astype(bool), "RGB": np.stack([array.astype(np.uint8)] * 3, -1)}
    typed = typed.get(mode, array.astype(np.uint8))
    buffer = io.BytesIO()
    Image.fromarray(typed).save(buffer, format="TIFF" if mode in ("I", "F") else "PNG")
    return buffer.getvalue()


texts = st.text(st.characters(codec="utf-8"), max_size=40)
split_lists = st.one_of(
    st.binary(max_size=80),
    texts,
    st.lists(st.sampled_from(TRAIN + VAL + ["", " ", "e", "../a", "a b", "\ufeffa", "a\x00"]), max_size=6)
    .map(lambda ids: "\n".join(ids)),
).map(lambda content: content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
scalars = st.none() | st.booleans() | st.integers() | st.floats() | texts
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
                      max_leaves=6)


@st.composite
def damage(draw: st.DrawFn) -> tuple[str, bytes]:
    """(path under the data root or "config", new content) for one file."""
    target = draw(st.sampled_from(["image", "mask", "split", "annotation", "config"]))
    name = draw(st.sampled_from(TRAIN + VAL))
    if target == "image":
        return f"JPEGImages/{name}.jpg", draw(image_files())
    if target == "mask":
        return f"SegmentationClassAug/{name}.png", draw(mask_files())
    if target == "split":
        return f"ImageSets/Segmentation/{draw(st.sampled_from(['train', 'val']))}.txt", draw(split_lists)
    if target == "annotation":
        objects = draw(st.lists(st.sampled_from(["dog", "cat", "", "unicorn", "<x>"]), max_size=3))
        body = "".join(f"<object><name>{o}</name></object>" for o in objects)
        xml = f"<annotation>{body}</annotation>".encode()
        return "Annotations/c.xml", draw(st.sampled_from([xml, xml[: len(xml) // 2]]) | st.binary(max_size=40))
    section = draw(st.dictionaries(st.sampled_from(["classes", "train_split", "val_split"]) | texts, values,
                                   max_size=4))
    base = {"classes": "voc", "train_split": "train", "val_split": "val"}
    return "config", yaml.safe_dump({"prepare": {**base, **section}}).encode()


@FUZZ
@given(damage())
def test_fuzzed_data_sets_give_success_or_one_line(change: tuple[str, bytes]) -> None:
    where, content = change
    with tempfile.TemporaryDirectory() as folder:
        root, config, out = Path(folder) / "root", Path(folder) / "voc.yaml", Path(folder) / "out"
        make_dataset(root)
        config.write_text("prepare: {classes: voc, train_split: train, val_split: val}\n")
        (config if where == "config" else root / where).write_bytes(content)
        assert_success_or_one_line(*run_prepare(root, out, config), out)


@st.composite
def params_files(draw: st.DrawFn) -> tuple[str, bytes]:
    """(section, YAML bytes): known and unknown keys with any values, or text and bytes that may not be YAML."""
    section = draw(st.sampled_from(sorted(SECTIONS)))
    schema = SECTIONS[section]
    nested = ["optimizer", "arch_options", "lr", "width", "context_rates", "name"]
    keys = st.sampled_from([*schema.model_fields, *nested]) | texts
    kind = draw(st.sampled_from(["values", "values", "text", "bytes"]))
    if kind == "text":
        return section, draw(texts).encode("utf-8", "surrogatepass")
    if kind == "bytes":
        return section, draw(st.binary(max_size=60))
    document = {section: draw(st.dictionaries(keys, values | st.dictionaries(keys, values, max_size=3), max_size=4))}
    return section, yaml.safe_dump(document).encode()


@FUZZ
@given(params_files())
def test_fuzzed_params_give_a_schema_or_one_line(change: tuple[str, bytes]) -> None:
    section, content = change
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "x.yaml"
        config.write_bytes(content)
        try:
            params = load_params(section, SECTIONS[section], config=config, defaults=REPO / "params.yaml")
        except ParamsError as error:
            message = str(error)
            assert "\n" not in message and message.startswith((f"{config}", f"{REPO / 'params.yaml'}")), message
        else:
            assert isinstance(params, SECTIONS[section])
