"""The params loader: defaults merged with a data set's config, validated, and every problem named in one line."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args, get_origin

import numpy as np
import pytest
import yaml
from pydantic import BaseModel

from dgcn.models.options import SEGMENTER_OPTIONS, TRUNK_OPTIONS
from stages import params as params_module
from stages.params import ParamsError, Section, load_params, merge
from stages.schemas.cues import CuesParams
from stages.schemas.dense_crf import MAX_COMPAT, MIN_WIDTH, DenseCRFParams
from stages.schemas.network import Arch
from stages.schemas.retrain import RetrainParams
from stages.schemas.synthesize import SynthesizeParams
from stages.schemas.train_dgcn import TrainDGCNParams
from tools.params_schema import SECTIONS, json_schema

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.fixture
def defaults(tmp_path: Path) -> Path:
    """A copy of the committed params.yaml in tmp_path (valid: see test_committed_configs_load_every_section)."""
    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text())
    return path


def write(path: Path, content: str | dict) -> Path:
    """Write YAML text, or a document dumped as YAML, to `path`."""
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


def fails(section: str, *, defaults: Path, config: Path | None, schema: type[Section] | None = None) -> str:
    """The one-line ParamsError message of loading `section`."""
    with pytest.raises(ParamsError) as caught:
        load_params(section, schema or SECTIONS[section], config=config, defaults=defaults)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("config", [None, *sorted(ROOT.glob("pipelines/*.yaml"))], ids=lambda c: getattr(c, "stem", c))
def test_committed_configs_load_every_section(config: Path | None) -> None:
    # synthesize runs only for the synthetic data sets; every other stage runs for every data set
    names = set(SECTIONS)
    if config is not None and config.stem not in DEFAULTS["synthetic_datasets"]:
        names.discard("synthesize")
    for name in sorted(names):
        params = load_params(name, SECTIONS[name], config=config, defaults=ROOT / "params.yaml")
        assert isinstance(params, SECTIONS[name])


def test_merge_merges_mappings_and_replaces_everything_else() -> None:
    base = {"a": {"x": 1, "y": {"p": 1, "q": 2}}, "scales": [1, 2, 3], "b": {"z": 1}, "c": None}
    override = {"a": {"y": {"q": 3}}, "scales": [4], "b": 5, "c": {"n": 1}, "d": 6}
    assert merge(base, override) == {"a": {"x": 1, "y": {"p": 1, "q": 3}}, "scales": [4], "b": 5, "c": {"n": 1}, "d": 6}
    assert base["a"]["y"] == {"p": 1, "q": 2}  # inputs untouched


def test_arch_options_are_replaced_whole() -> None:
    base = {"arch_options": {"aspp_rates": [12]}, "optimizer": {"lr": 1, "momentum": 0.9}}
    override = {"arch_options": {"width": 8}, "optimizer": {"lr": 2}}
    assert merge(base, override) == {"arch_options": {"width": 8}, "optimizer": {"lr": 2, "momentum": 0.9}}


def test_published_geometry_batchnorm_and_head() -> None:
    voc, synthetic = ROOT / "pipelines/voc12.yaml", ROOT / "pipelines/synthetic.yaml"
    dgcn = load_params("train_dgcn", TrainDGCNParams, config=voc, defaults=ROOT / "params.yaml")
    retrain = load_params("retrain", RetrainParams, config=voc, defaults=ROOT / "params.yaml")
    assert dgcn.arch_options == {"aspp_rates": [12]}
    assert retrain.arch_options == {"msc_scales": [0.5, 0.75], "resnet": "msra"}  # DeepLabV2_ResNet101_MSC
    assert dgcn.crop_size == 321 and retrain.crop_size == 381 and retrain.scale_range == [0.5, 1.5]
    assert retrain.scale_step == 0.25 and retrain.iterations == 10000 and retrain.epochs is None
    assert retrain.batch_size == 16 and retrain.iter_size == 2  # DeepLab's 8 x ITER_SIZE 2
    assert (retrain.optimizer.head_lr_mult, retrain.optimizer.head_bias_lr_mult) == (10, 20)
    assert retrain.optimizer.head_bias_weight_decay == 0 and retrain.pretrained == "deeplabv1_resnet101-coco.pth"
    assert dgcn.batchnorm == "batch_stats" and retrain.batchnorm == "frozen" and dgcn.resize_long is None
    assert dgcn.data_workers == retrain.data_workers == 0
    small = load_params("train_dgcn", TrainDGCNParams, config=synthetic, defaults=ROOT / "params.yaml")
    small_retrain = load_params("retrain", RetrainParams, config=synthetic, defaults=ROOT / "params.yaml")
    assert small.batchnorm == small_retrain.batchnorm == "train" and small.arch_options == {"width": 32}
    assert small.crop_size == small_retrain.crop_size == 96 and small_retrain.scale_range == [1.0, 1.0]
    assert small_retrain.epochs == 12 and small_retrain.iterations is None and small_retrain.iter_size == 1


def test_config_value_wins_and_nested_groups_merge(tmp_path: Path, defaults: Path) -> None:
    text = "train_dgcn:\n  epochs: 3\n  optimizer: {lr: 1e-3}\n  arch: small\n  arch_options: {width: 8}\n"
    config = write(tmp_path / "x.yaml", text)
    params = load_params("train_dgcn", TrainDGCNParams, config=config, defaults=defaults)
    assert params.epochs == 3 and params.optimizer.lr == 1e-3  # YAML 1.2 float, as DVC reads it
    assert params.optimizer.momentum == DEFAULTS["train_dgcn"]["optimizer"]["momentum"]  # the rest of the group
    assert params.arch_options == {"width": 8} and params.decay_gamma == DEFAULTS["train_dgcn"]["decay_gamma"]
    with pytest.raises(ValueError, match="frozen"):
        params.epochs = 4  # type: ignore[misc]


def test_types_paths_and_floats(tmp_path: Path, defaults: Path) -> None:
    config = write(tmp_path / "x.yaml", "cues: {saliency_dir: sal/maps, optimizer: {lr: 1}}\n")
    params = load_params("cues", CuesParams, config=config, defaults=defaults)
    assert params.saliency_dir == Path("sal/maps") and params.path is None
    assert params.optimizer.lr == 1.0


def test_crf_kernels_are_dense_crf_keyword_arguments(defaults: Path) -> None:
    from dgcn.crf import dense_crf

    kernels = load_params("dense_crf", DenseCRFParams, config=None, defaults=defaults).kernels()
    assert len(kernels) == 6
    inspect.signature(dense_crf).bind(None, None, **kernels)  # TypeError on a name dense_crf does not take


def test_test_time_crf_kernels_per_network(tmp_path: Path, defaults: Path) -> None:
    """DGCN's kernels (dense_crf) for the DGCN network, DeepLab's (POS_XY_STD 1, POS_W 3, BI_XY_STD 67, BI_RGB_STD 3,
    BI_W 4, 10 iterations) for the retrained network and the upper bound; either set for either network."""
    from dgcn.crf import dense_crf
    from stages.schemas.evaluate import EvaluateParams

    dense = load_params("dense_crf", DenseCRFParams, config=None, defaults=defaults)
    kernels = load_params("evaluate", EvaluateParams, config=None, defaults=defaults).kernels(dense)
    deeplab = {"gaussian_sxy": 1.0, "gaussian_compat": 3.0, "bilateral_sxy": 67.0, "bilateral_srgb": 3.0,
               "bilateral_compat": 4.0, "iterations": 10}
    assert kernels == {"dgcn": dense.kernels(), "retrained": deeplab, "upper_bound": deeplab}
    inspect.signature(dense_crf).bind(None, None, **deeplab)
    config = write(tmp_path / "x.yaml", "evaluate: {crf_kernels: {dgcn: deeplab, retrained: dense_crf}}\n")
    swapped = load_params("evaluate", EvaluateParams, config=config, defaults=defaults).kernels(dense)
    assert swapped == {"dgcn": deeplab, "retrained": dense.kernels(), "upper_bound": dense.kernels()}


@pytest.mark.parametrize(("section", "text", "message"), [
    ("train_dgcn", "train_dgcn: {optimizer: {lr: -1}}",
     "train_dgcn.optimizer.lr: input should be greater than 0 (got -1)"),
    ("train_dgcn", "train_dgcn: {optimizer: {lr: .nan}}", "train_dgcn.optimizer.lr: must be a finite number (got nan)"),
    ("dense_crf", "dense_crf: {bilateral_sxy: .inf}", "dense_crf.bilateral_sxy: must be a finite number (got inf)"),
    ("cues", "cues: {epochs: true}", "cues.epochs: input should be a valid integer (got True)"),
    ("graph_cut", "graph_cut: {threshold: '0.5'}", "graph_cut.threshold: input should be a valid number (got '0.5')"),
    ("evaluate", "evaluate: {scales: []}",
     "evaluate.scales: list should have at least 1 item after validation, not 0 (got [])"),
    ("export", "export: {scales: [1.0, 5]}", "export.scales[1]: input should be less than or equal to 4 (got 5)"),
    ("prepare", "prepare: {classes: coco}", "prepare.classes: input should be 'voc' or 'synthetic' (got 'coco')"),
    ("retrain", "retrain: {amp: fp32}", "retrain.amp: input should be 'bf16', 'fp16' or 'off' (got 'fp32')"),
    ("retrain", "retrain: {optimizer: 3}",
     "retrain.optimizer: input should be a valid dictionary or instance of RetrainOptimizerParams (got 3)"),
    ("train_dgcn", "train_dgcn: {optimizer: {name: adamw}}",
     "train_dgcn.optimizer.name: the DGCN schedule is SGD with warm-up and step decay: name must be 'sgd' "
     "(got 'adamw')"),
    ("cues", "cues: {epoch: 3}", "cues.epoch: unknown parameter; did you mean 'epochs'?"),
    ("retrain", "retrain: {optimizer: {momentun: 0.5}}",
     "retrain.optimizer.momentun: unknown parameter; did you mean 'momentum'?"),
    ("export", "export: {scales: []}",
     "export.scales: list should have at least 1 item after validation, not 0 (got [])"),
    ("cues", "cues: {arch: small, arch_options: {widht: 32}}",
     "cues.arch_options.widht: unknown parameter; did you mean 'width'?"),
    ("cues", "cues: {arch: small, arch_options: {head_dilation: 2}}",  # a segmenter's option: cues builds a classifier
     "cues.arch_options.head_dilation: unknown parameter; known: width, context_rates"),
    ("train_dgcn", "train_dgcn: {arch: small, arch_options: {width: 0}}",
     "train_dgcn.arch_options.width: input should be greater than or equal to 1 (got 0)"),
    ("train_dgcn", "train_dgcn: {arch: small, arch_options: {context_rates: []}}",
     "train_dgcn.arch_options.context_rates: list should have at least 1 item after validation, not 0 (got [])"),
    ("retrain", "retrain: {arch: deeplab_v2, arch_options: {aspp_rates: [6, 0]}}",
     "retrain.arch_options.aspp_rates[1]: input should be greater than or equal to 1 (got 0)"),
    ("retrain", "retrain: {arch: deeplab_v3, arch_options: {width: 8}}",
     "retrain.arch_options.width: unknown parameter; known: none"),
    ("retrain", "retrain: {arch: hrnet, arch_options: {variant: w48}}",
     "retrain.arch_options.variant: string should match pattern '^hrnet_' (got 'w48')"),
    ("retrain", "retrain: {arch: small, arch_options: [8]}",
     "retrain.arch_options: input should be a valid dictionary (got [8])"),
    ("cues", "cues: {arch: deeplab_v4}", "cues.arch: input should be 'small', 'deeplab_v2', 'deeplab_v3' or 'hrnet' "
     "(got 'deeplab_v4'); did you mean 'deeplab_v3'?"),
    ("crf", f"crf: {{workers: {'9' * 200}}}",  # a long value is cut: the line stays readable
     f"crf.workers: input should be less than or equal to 64 (got {'9' * 77}...)"),
    ("retrain", "retrain: {scale_range: [1.5, 0.5]}",
     "retrain.scale_range: scale_range must be [low, high] with low <= high (got [1.5, 0.5])"),
    ("retrain", "retrain: {scale_step: 0.3}", "retrain.scale_step: scale_step must divide scale_range [0.5, 1.5] "
                                               "(got 0.3)"),
    ("retrain", "retrain: {iterations: null}", "retrain.iterations: set one of epochs and iterations, the other null "
                                               "(got None)"),
    ("evaluate", "evaluate: {crf_kernels: {retrained: deep_lab}}",
     "evaluate.crf_kernels.retrained: input should be 'dense_crf' or 'deeplab' (got 'deep_lab'); did you mean "
     "'deeplab'?"),
    ("train_dgcn", "train_dgcn: {resize_long: [320]}",
     "train_dgcn.resize_long: list should have at least 2 items after validation, not 1 (got [320])"),
    ("train_dgcn", "train_dgcn: {batchnorm: fixed}", "train_dgcn.batchnorm: input should be 'train', 'frozen' or "
                                                      "'batch_stats' (got 'fixed')"),
    ("retrain", "retrain: {color_jitter: {hue: 0.6}}",
     "retrain.color_jitter.hue: input should be less than or equal to 0.5 (got 0.6)"),
    ("train_dgcn", "train_dgcn: {input_size: 321}", "train_dgcn.input_size: unknown parameter; did you mean "
                                                    "'crop_size'?"),
    ("crf", "crf: {zzz: 1}", "crf.zzz: unknown parameter; known: grown_confidence, workers"),
])
def test_bad_config_value_names_config_file_and_key(tmp_path: Path, defaults: Path, section: str, text: str,
                                                     message: str) -> None:
    config = write(tmp_path / "x.yaml", text)
    assert fails(section, defaults=defaults, config=config) == f"{config}: {message}"


def test_retrain_length_is_epochs_or_iterations(tmp_path: Path, defaults: Path) -> None:
    # the defaults count iterations: a config that counts epochs must null them
    message = fails("retrain", defaults=defaults, config=write(tmp_path / "x.yaml", "retrain: {epochs: 3}\n"))
    assert message == f"{defaults}: retrain.iterations: set one of epochs and iterations, the other null (got 10000)"
    config = write(tmp_path / "y.yaml", "retrain: {epochs: 3, iterations: null}\n")
    params = load_params("retrain", RetrainParams, config=config, defaults=defaults)
    assert (params.epochs, params.iterations) == (3, None)


def _leaf_keys(schema: type[BaseModel], prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(dotted path, annotation) of every field of `schema`, nested groups walked into."""
    for name, field in schema.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _leaf_keys(annotation, (*prefix, name))
        else:
            yield (*prefix, name), annotation


def _nested(path: tuple[str, ...], value: Any) -> dict:
    """{path[0]: {path[1]: ... value}}."""
    return value if not path else {path[0]: _nested(path[1:], value)}


def _is_float(annotation: Any) -> bool:
    """float, float | None, or an Annotated float."""
    return annotation is float or float in get_args(annotation)


def _floats_and_lists() -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """(section, *key) of every float param and of every list-of-floats param."""
    floats, lists = [], []
    for section, schema in SECTIONS.items():
        for path, annotation in _leaf_keys(schema):
            if _is_float(annotation):
                floats.append((section, *path))
            elif get_origin(annotation) is list and _is_float(get_args(annotation)[0]):
                lists.append((section, *path))
    return floats, lists


FLOATS, LISTS = _floats_and_lists()


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
@pytest.mark.parametrize("key", FLOATS + [(*key, 0) for key in LISTS], ids=lambda key: ".".join(map(str, key)))
def test_every_float_refuses_nan_and_infinity(tmp_path: Path, defaults: Path, key: tuple, value: str) -> None:
    *path, last = key
    leaf = [value] if isinstance(last, int) else {last: value}  # a list's first item, or the key itself
    document = _nested(tuple(path), leaf)
    config = write(tmp_path / "x.yaml", yaml.safe_dump(document).replace(f"'{value}'", value))
    dotted = ".".join(path) + ("[0]" if isinstance(last, int) else f".{last}")
    assert fails(path[0], defaults=defaults, config=config).startswith(f"{config}: {dotted}: must be a finite number")


@pytest.mark.parametrize("key", LISTS, ids=".".join)
def test_every_list_refuses_to_be_empty(tmp_path: Path, defaults: Path, key: tuple[str, ...]) -> None:
    config = write(tmp_path / "x.yaml", _nested(key, []))
    message = fails(key[0], defaults=defaults, config=config)
    assert message.startswith(f"{config}: {'.'.join(key)}: list should have at least ")
    assert message.endswith("after validation, not 0 (got [])")


def test_the_walk_finds_the_floats_and_lists() -> None:
    # the two tests above are only as good as this walk: it must reach into nested groups and float-valued lists
    assert ("train_dgcn", "optimizer", "lr") in FLOATS and ("dense_crf", "bilateral_srgb") in FLOATS
    assert len(FLOATS) >= 25
    assert set(LISTS) == {("synthesize", "object_area"), ("synthesize", "part_area"), ("cues", "scales"),
                          ("export", "scales"), ("evaluate", "scales"), ("retrain", "scale_range")}


def test_arch_options_are_validated_by_the_builders_own_options() -> None:
    # one source: the schema takes the builders' TypedDicts (tests/test_models.py checks each builder takes its own)
    assert set(get_args(Arch)) == set(SEGMENTER_OPTIONS)
    assert TrainDGCNParams.builder_options is RetrainParams.builder_options is SEGMENTER_OPTIONS
    assert CuesParams.builder_options is TRUNK_OPTIONS


def test_valid_arch_options_reach_the_builder(tmp_path: Path, defaults: Path) -> None:
    from dgcn.models.registry import build_segmenter

    text = "train_dgcn: {arch: small, arch_options: {width: 4, context_rates: [1, 2], head_dilation: 3}}\n"
    params = load_params("train_dgcn", TrainDGCNParams, config=write(tmp_path / "x.yaml", text), defaults=defaults)
    assert params.arch_options == {"width": 4, "context_rates": [1, 2], "head_dilation": 3}
    assert build_segmenter(params.arch, 3, **params.arch_options).trunk.out_channels == 12


def test_bad_default_names_defaults_file(tmp_path: Path, defaults: Path) -> None:
    document = yaml.safe_load(defaults.read_text())
    document["export"]["workers"] = 100
    document["train_dgcn"]["optimizer"]["name"] = "adamw"
    del document["evaluate"]["flip"]
    write(defaults, document)
    # the config sets keys beside the bad ones, so the blame must follow the exact key, not the group
    config = write(tmp_path / "x.yaml", "export: {batch_size: 2}\ntrain_dgcn: {optimizer: {lr: 0.1}}\nevaluate: {}\n")
    assert fails("export", defaults=defaults, config=config) == (
        f"{defaults}: export.workers: input should be less than or equal to 64 (got 100)")
    assert fails("train_dgcn", defaults=defaults, config=config).startswith(f"{defaults}: train_dgcn.optimizer.name: ")
    assert fails("evaluate", defaults=defaults, config=config) == f"{defaults}: evaluate.flip: missing"


def test_missing_files(tmp_path: Path, defaults: Path) -> None:
    nope = tmp_path / "nope.yaml"
    assert fails("crf", defaults=nope, config=None) == f"params file not found: {nope}"
    missing = tmp_path / "pipelines" / "nope.yaml"
    assert fails("crf", defaults=defaults, config=missing) == f"params file not found: {missing}"


def test_malformed_yaml_names_line_and_column(tmp_path: Path, defaults: Path) -> None:
    config = write(tmp_path / "x.yaml", "crf: {}\ncues:\n  epochs: 3\n   lr: 2\n")
    # the problem's wording differs between libyaml and pure-Python PyYAML
    assert fails("crf", defaults=defaults, config=config).startswith(
        f"{config}:4:6: malformed YAML: mapping values are not allowed")


def test_missing_sections(tmp_path: Path, defaults: Path) -> None:
    config = write(tmp_path / "x.yaml", "cues: {}\n")
    assert fails("crf", defaults=defaults, config=config) == (
        f"{config}: missing section 'crf' (write 'crf: {{}}' when nothing differs)")
    bad = write(tmp_path / "d.yaml", "cues: {}\n")
    assert fails("crf", defaults=bad, config=None) == f"{bad}: missing section 'crf'"


def test_section_must_be_a_mapping(tmp_path: Path, defaults: Path) -> None:
    config = write(tmp_path / "x.yaml", "crf:\n")
    assert fails("crf", defaults=defaults, config=config) == f"{config}: section 'crf' must be a mapping (got None)"
    bad = write(tmp_path / "d.yaml", "crf: [1]\n")
    assert fails("crf", defaults=bad, config=None) == f"{bad}: section 'crf' must be a mapping (got [1])"
    listed = write(tmp_path / "l.yaml", "- crf\n")
    assert fails("crf", defaults=defaults, config=listed) == f"{listed}: expected a mapping of sections (got list)"


def test_json_schema_file_is_current() -> None:
    committed = json.loads((ROOT / "docs" / "params.schema.json").read_text())
    assert committed == json_schema(), "regenerate with `python -m tools.params_schema > docs/params.schema.json`"
    assert set(SECTIONS) <= set(committed["properties"]) and set(committed["required"]) >= set(DEFAULTS)


def test_module_prints_the_schema() -> None:
    # a subprocess: runpy would define the schemas in a __main__ whose names pydantic cannot resolve
    out = subprocess.run([sys.executable, "-m", "tools.params_schema"], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert json.loads(out.stdout) == json_schema()


def test_the_sections_named_here_are_the_schemas_sections() -> None:
    # stages.params may not import every schema (each stage would rerun when any changed): it names them
    assert tuple(SECTIONS) == params_module.SECTIONS
    document = json_schema()
    assert set(params_module.VARIABLES) == set(document["properties"]) - set(SECTIONS)


@pytest.mark.parametrize(("target", "text", "message"), [
    ("config", "cues: {}\ncrf: {}\ntrian_dgcn: {epochs: 3}\n",
     "unknown section 'trian_dgcn'; did you mean 'train_dgcn'?"),
    ("config", "crf: {}\ndatasets: [x]\n", "unknown section 'datasets'; known: synthesize,"),  # params.yaml's alone
    ("defaults", "crf: {workers: 0}\nzzz: 1\n", "unknown section 'zzz'; known: synthesize, prepare"),
    ("config", "crf:\n  workers: 1\n  workers: 2\n", ":3:3: malformed YAML: found duplicate key 'workers'"),
    ("config", "crf: {}\ncues: {epochs: .nan}\n", "cues.epochs: must be a finite number (got nan)"),
    ("config", "crf: {}\nx: &a [*a]\n", "more than 100000 values once its aliases are expanded"),
])
def test_a_params_file_is_checked_whole(tmp_path: Path, defaults: Path, target: str, text: str, message: str) -> None:
    path = write(tmp_path / "x.yaml", text) if target == "config" else defaults
    if target == "defaults":
        write(defaults, defaults.read_text() + text.split("\n", 1)[1])
    found = fails("crf", defaults=defaults, config=path if target == "config" else None)
    assert found.startswith(str(path)) and message in found, found


def test_a_bad_default_is_named_though_the_config_overrides_it(tmp_path: Path, defaults: Path) -> None:
    document = yaml.safe_load(defaults.read_text())
    document["evaluate"]["gallery_val"] = -1
    write(defaults, document)
    config = write(tmp_path / "x.yaml", "evaluate: {gallery_val: 2}\n")
    assert fails("evaluate", defaults=defaults, config=config) == (
        f"{defaults}: evaluate.gallery_val: input should be greater than or equal to 0 (got -1)")


def test_anchors_and_aliases_still_load(tmp_path: Path, defaults: Path) -> None:
    text = "cues: {arch: small, arch_options: &w {width: 8}}\ntrain_dgcn: {arch: small, arch_options: *w}\n"
    params = load_params("train_dgcn", TrainDGCNParams, config=write(tmp_path / "x.yaml", text), defaults=defaults)
    assert params.arch_options == {"width": 8}


# Each bound that keeps a native library alive: (section, key, the bound, a value just beyond it).
BOUNDS = [("dense_crf", "gaussian_sxy", MIN_WIDTH, 0.0999), ("dense_crf", "bilateral_sxy", MIN_WIDTH, 0.0999),
          ("dense_crf", "bilateral_srgb", MIN_WIDTH, 0.0999), ("dense_crf", "gaussian_compat", MAX_COMPAT, 1000.5),
          ("dense_crf", "bilateral_compat", MAX_COMPAT, 1000.5), ("train_dgcn", "crf_scale", 0.001, 0.00099),
          *((section, "seed", 2**32 - 1, 2**32) for section in ("cues", "train_dgcn", "retrain")),
          ("prepare", "generic", None, {"seed": 2**32})]


@pytest.mark.parametrize(("section", "key", "bound", "beyond"), BOUNDS, ids=lambda v: str(v))
def test_a_bound_is_accepted_and_just_beyond_it_refused(tmp_path: Path, defaults: Path, section: str, key: str,
                                                        bound: object, beyond: object) -> None:
    if bound is not None:
        params = load_params(section, SECTIONS[section], config=write(tmp_path / "x.yaml", {section: {key: bound}}),
                             defaults=defaults)
        assert getattr(params, key) == bound
    config = write(tmp_path / "x.yaml", {section: {key: beyond}})
    assert fails(section, defaults=defaults, config=config).startswith(f"{config}: {section}.{key}")


def test_the_seed_bound_is_what_numpy_takes() -> None:
    from stages.runtime import seed_everything

    seed_everything(2**32 - 1)
    with pytest.raises(ValueError):
        np.random.seed(2**32)


def test_the_dense_crf_survives_its_narrowest_kernels_on_the_widest_images() -> None:
    # a subprocess: below the bounds pydensecrf corrupts its heap and takes the interpreter with it. At the bound, the
    # positions of a 10^4-pixel side (the widest the bound is sized for) and every colour level.
    script = (
        "import numpy as np\n"
        "from dgcn.crf import dense_crf\n"
        "from stages.schemas.dense_crf import MAX_COMPAT, MIN_WIDTH\n"
        "rng = np.random.default_rng(0)\n"
        "for shape in [(2, 10_000), (10_000, 2), (200, 200)]:\n"
        "    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)\n"
        "    probs = rng.random((3, *shape), dtype=np.float32)\n"
        "    out = dense_crf(image, probs / probs.sum(0), gaussian_sxy=MIN_WIDTH, bilateral_sxy=MIN_WIDTH,\n"
        "                    bilateral_srgb=MIN_WIDTH, gaussian_compat=MAX_COMPAT, bilateral_compat=MAX_COMPAT,\n"
        "                    iterations=2)\n"
        "    assert np.isfinite(out).all()\n"
        "print('survived')\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout == "survived\n", result.stderr


def test_object_area_bound_follows_the_style(tmp_path: Path, defaults: Path) -> None:
    config = write(tmp_path / "x.yaml", "synthesize: {object_area: [0.6, 0.8]}")
    message = fails("synthesize", defaults=defaults, config=config)
    assert message.startswith(f"{config}: synthesize: ")
    assert "object_area must be at most 0.5 in the plain style" in message
    parts = write(tmp_path / "parts.yaml", "synthesize: {object_area: [0.6, 0.8], style: parts}")
    assert load_params("synthesize", SynthesizeParams, config=parts, defaults=defaults).object_area == [0.6, 0.8]
