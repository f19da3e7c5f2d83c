"""make ablate (tools/ablate.py): the plan, the overrides it passes to DVC, the summary over seeds, one real run."""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from pathlib import Path

import pytest
import yaml
from dvc_project import TINY, dvc, git, make_project, run

from dgcn.errors import InputError
from tools.ablate import (
    FIGURES,
    Variant,
    aggregate,
    experiment_name,
    figures_of,
    load_plan,
    markdown_table,
    override_args,
    plan_runs,
    run_as_group,
    run_overrides,
    tables,
    waits_for,
)

REPO = Path(__file__).resolve().parents[1]


def test_the_repository_plan_has_the_variants_the_issue_names() -> None:
    plan = load_plan(REPO / "ablation.yaml")
    assert {"cam", "seeds_only", "seeds_constrain", "dgcn_no_constrain", "dgcn"} <= set(plan.variants)
    assert len(plan.seeds) >= 3 and "synthesize.seed" not in plan.seed_keys
    assert plan.variants["dgcn"].overrides == {}  # the full method is the config as it is


def test_the_docs_document_every_variant_with_its_switches() -> None:
    """docs/ablations.md's variant table: one row per variant of the plan, naming each of its overrides' keys."""
    lines = (REPO / "docs" / "ablations.md").read_text(encoding="utf-8").splitlines()
    rows = {line.split("|")[1].strip(" `"): line for line in lines if line.startswith("| `") and line.count("|") == 4}
    for name, variant in load_plan(REPO / "ablation.yaml").variants.items():
        assert name in rows, f"docs/ablations.md: no row for variant {name}"
        assert all(f"`{key}:" in rows[name] for key in variant.overrides), f"docs/ablations.md: switches of {name}"


def test_overrides_use_hydra_syntax_and_later_sources_win() -> None:
    plan = load_plan(REPO / "ablation.yaml")
    overrides = run_overrides(plan, "synthetic", "seeds_only", 2)
    assert overrides["train_dgcn.constrain_weight"] == 0.0 and overrides["cues.seed"] == 2
    args = override_args("pipelines/x.yaml", {"a.b": None, "c": [0.1, 0.2], "d": "cam", "e": 1.0})
    assert args == ["-S", "pipelines/x.yaml:++a.b=null", "-S", "pipelines/x.yaml:++c=[0.1, 0.2]",
                    "-S", "pipelines/x.yaml:++d=cam", "-S", "pipelines/x.yaml:++e=1.0"]
    assert experiment_name("synthetic_hard", "seeds_only", 1) == "ablate-synthetic-hard-seeds-only-s1"


def test_a_run_waits_for_the_first_run_whose_cues_or_network_it_shares() -> None:
    plan = load_plan(REPO / "ablation.yaml")
    variants = ["dgcn", "seeds_constrain", "cam", "seeds_constrain_export_cut"]
    runs = plan_runs(plan, ["synthetic", "synthetic_hard"], variants, [0, 1])
    waits = waits_for(runs)

    def of(setting: str, variant: str, seed: int) -> str:
        return experiment_name(setting, variant, seed)

    assert waits[of("synthetic", "dgcn", 0)] == set() == waits[of("synthetic", "dgcn", 1)]
    assert waits[of("synthetic_hard", "dgcn", 0)] == set()  # another data set: nothing shared
    assert waits[of("synthetic", "cam", 1)] == {of("synthetic", "dgcn", 1)}  # its cues and its network
    assert waits[of("synthetic", "seeds_constrain", 0)] == {of("synthetic", "dgcn", 0)}  # its cues only
    assert waits[of("synthetic", "seeds_constrain_export_cut", 0)] == {of("synthetic", "dgcn", 0),
                                                                      of("synthetic", "seeds_constrain", 0)}
    assert [run.name for run in runs[:2]] == [of("synthetic", "dgcn", 0), of("synthetic", "dgcn", 1)]


def test_figures_follow_the_variant_mapping_and_the_ratio_is_per_run() -> None:
    summary = {"pseudo_miou": 0.5, "cam_baseline_miou": 0.3, "crf_miou": 0.6, "val_miou": 0.4,
               "upper_bound_val_miou": 0.8, "dgcn_val_miou": 0.45}
    cam = figures_of(summary, Variant(overrides={}, figures={"pseudo_miou": "cam_baseline_miou", "crf_miou": None}))
    assert cam["pseudo_miou"] == 0.3 and cam["crf_miou"] is None and cam["ratio_to_upper_bound"] == 0.5
    assert figures_of({"val_miou": 0.4}, Variant(overrides={}))["ratio_to_upper_bound"] is None


def test_aggregate_is_mean_sample_std_and_n_over_the_runs_that_have_the_figure() -> None:
    runs = [{figure: None for figure in FIGURES} | {"val_miou": v, "crf_miou": c}
            for v, c in ((0.5, None), (0.7, 0.2), (0.6, None))]
    result = aggregate(runs)
    assert result["val_miou"] == {"mean": 0.6, "std": round(math.sqrt(0.01), 4), "n": 3}
    assert result["crf_miou"] == {"mean": 0.2, "std": 0.0, "n": 1} and result["pseudo_miou"] is None
    table = markdown_table({"dgcn": result})
    assert "| `dgcn` |" in table and "0.600 ± 0.100 (3)" in table and table.count("\n") == 3
    grown = aggregate([{"final_grown_recall": 0.5, "val_miou": 0.1}])
    both = tables({"cam": result, "dgcn": grown})
    growth_table = both.split("\n\n")[1]
    assert "grown: recall" in growth_table and "| `dgcn` |" in growth_table and "`cam`" not in growth_table


def test_a_bad_plan_is_one_error_naming_the_file(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({"seeds": [0], "seed_keys": ["cues.seed"], "common": {},
                                    "settings": {"s": {"dataset": "synthetic", "overrides": {}}},
                                    "variants": {"v": {"overrides": {}, "figures": {"nonsense": None}}}}))
    with pytest.raises(InputError, match=f"{plan}: unknown figure 'nonsense'"):
        load_plan(plan)
    plan.write_text("seeds: [0]\n")
    with pytest.raises(InputError, match=f"{plan}: seed_keys"):
        load_plan(plan)


@pytest.mark.slow
def test_make_ablate_runs_dvc_experiments_and_summarises_them(tmp_path: Path) -> None:
    tiny = {**TINY, "synthesize": {"num_train": 16, "num_val": 8, "image_size": 64}}
    root = make_project(tmp_path / "repo", ["synthetic"], {"synthetic": tiny})
    (root / "ablation.yaml").write_text(yaml.safe_dump({
        "seeds": [0, 1], "seed_keys": ["cues.seed", "train_dgcn.seed", "retrain.seed"], "common": {},
        "settings": {"synthetic": {"dataset": "synthetic", "overrides": {}}},
        "variants": {"dgcn": {"overrides": {}},
                     "seeds_only": {"overrides": {"graph_cut.threshold": 1.0, "train_dgcn.constrain_weight": 0.0,
                                                  "export.threshold": None}},
                     "a_lever": {"overrides": {"graph_cut.knn_k": 5}, "lever": True}}}))
    git("add", "-A", cwd=root)
    git("commit", "-qm", "base", cwd=root)
    output = run([sys.executable, "-m", "stages", "ablate", "--jobs", "2"], cwd=root)
    # Two at once: the seeds' dgcn runs together; each seeds_only run after its seed's dgcn, sharing its data, cues
    # and upper bound through DVC's run cache. The lever is not run.
    for seed in (0, 1):
        assert f"ablate-synthetic-seeds-only-s{seed}: ran train_dgcn@synthetic, export@synthetic" in output
        assert "cues@synthetic" not in output.split(f"seeds-only-s{seed}: ran")[1].splitlines()[0]
        assert (root / f".dvc/tmp/ablate/ablate-synthetic-dgcn-s{seed}.log").is_file()
    assert "a-lever" not in output and "4 experiments" in output and "(2 at once, 1 thread(s) each)" in output
    summary = json.loads((root / "artifacts/synthetic/ablation/summary.json").read_text())
    assert set(summary) == {"dgcn", "seeds_only"} and summary["dgcn"]["val_miou"]["n"] == 2
    assert "| `seeds_only` |" in (root / "artifacts/synthetic/ablation/table.md").read_text()
    assert json.loads(dvc("metrics", "show", "--json", "artifacts/synthetic/ablation/summary.json", cwd=root))
    # --summary-only reads the same experiments back without running anything
    again = run([sys.executable, "-m", "stages", "ablate", "--summary-only"], cwd=root)
    assert ": ran" not in again
    assert json.loads((root / "artifacts/synthetic/ablation/summary.json").read_text()) == summary
    # a lever run on its own, at one seed, joins the table beside the variants run before
    lever = run([sys.executable, "-m", "stages", "ablate", "--variant", "a_lever", "--seed", "0"], cwd=root)
    assert "ablate-synthetic-a-lever-s0: ran train_dgcn@synthetic" in lever and "1 experiments" in lever
    joined = json.loads((root / "artifacts/synthetic/ablation/summary.json").read_text())
    assert joined == summary | {"a_lever": joined["a_lever"]} and joined["a_lever"]["val_miou"]["n"] == 1


def test_a_stopped_runner_stops_the_whole_experiment(tmp_path: Path) -> None:
    """SIGTERM (or Ctrl-C) while an experiment runs reaches DVC and the stage it started, not DVC alone."""
    pid_file = tmp_path / "grandchild.pid"
    # a child that starts a grandchild (the stage under DVC), records its pid and waits
    script = ("import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; "
              f"time.sleep(60)']); open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(60)")

    def stop(*_: object) -> None:
        raise SystemExit(143)

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, 2.0)
    try:
        with pytest.raises(SystemExit):
            run_as_group([sys.executable, "-c", script])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    grandchild = int(pid_file.read_text())
    for _ in range(50):  # the grandchild is not ours to reap: wait until it is gone or a zombie of init
        if not _alive(grandchild):
            break
        time.sleep(0.1)
    assert not _alive(grandchild)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
