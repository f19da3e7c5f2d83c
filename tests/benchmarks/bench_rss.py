"""Peak memory (RSS) of cues, train-dgcn, export and retrain on the embedded synthetic set at two sizes: with the data
read per sample, the larger set's peak stays within 1.2x of the smaller's.

    python tests/benchmarks/bench_rss.py [--small 480] [--large 4800] [--image-size 96]

Each measured stage runs alone in its own process, one epoch, every worker in-process (so that process's peak RSS is
all of the stage's memory); the upstream stages (synthesize, prepare) run first and are not measured.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from stages.params import merge
from tools.timing import verdict

REPO = Path(__file__).resolve().parents[2]
TARGET = 1.2


def config(images: int, image_size: int) -> dict:
    """The synthetic pipeline at `images` training images of `image_size`, one epoch per network, no worker
    processes."""
    overrides = {
        "synthesize": {"num_train": images, "num_val": 8, "image_size": image_size},
        "cues": {"epochs": 1, "input_size": image_size},
        "train_dgcn": {"epochs": 1, "workers": 0, "data_workers": 0, "warmup_iters": 1, "crop_size": image_size},
        "export": {"workers": 0, "input_size": image_size},
        "retrain": {"epochs": 1, "data_workers": 0, "crop_size": image_size},
    }
    return merge(yaml.safe_load((REPO / "pipelines" / "synthetic.yaml").read_text()), overrides)


def run_stage(args: list[str], folder: Path) -> int:
    """Run `python -m stages <args>` in `folder`; its peak RSS in MiB (SystemExit with its log on failure)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
    log = folder / "stage.log"
    with log.open("w") as sink:
        process = subprocess.Popen([sys.executable, "-m", "stages", args[0], "--config", "check.yaml", "--defaults",
                                    str(REPO / "params.yaml"), *args[1:]], cwd=folder, env=env, stdout=sink,
                                   stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own resource usage (Linux: ru_maxrss in KiB)
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"{args[0]} failed at exit status {process.returncode}:\n{log.read_text()}")
    return usage.ru_maxrss // 1024


def peaks(images: int, image_size: int) -> dict[str, int]:
    """Peak RSS in MiB of each measured stage on a fresh synthetic set of `images` training images."""
    manifest = ["--manifest", "a/prepare/manifest.json"]
    cues = ["--cues", "a/cues/cues.zarr"]
    with tempfile.TemporaryDirectory(prefix="bench-rss-") as name:
        folder = Path(name)
        (folder / "check.yaml").write_text(yaml.safe_dump(config(images, image_size)))
        for upstream in (["synthesize", "--out", "data"], ["prepare", "--root", "data", "--out", "a/prepare"]):
            run_stage(upstream, folder)
        measured = {  # in order: each stage reads what the ones before it wrote
            "cues": ["cues", *manifest, "--out", "a/cues"],
            "train-dgcn": ["train-dgcn", *manifest, *cues, "--classifier", "a/cues/classifier.pt", "--out", "a/train"],
            "export": ["export", *manifest, *cues, "--model", "a/train/model.pt", "--out", "a/export"],
            "retrain": ["retrain", *manifest, "--ground-truth", "--out", "a/retrain"],
        }
        return {stage: run_stage(args, folder) for stage, args in measured.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=480, help="training images of the smaller set")
    parser.add_argument("--large", type=int, default=4800, help="training images of the larger set")
    parser.add_argument("--image-size", type=int, default=96, help="side of the synthetic images")
    args = parser.parse_args()
    small, large = peaks(args.small, args.image_size), peaks(args.large, args.image_size)
    passed = True
    for stage in small:
        print(f"{stage}: peak RSS {small[stage]} MiB at {args.small} images, {large[stage]} MiB at {args.large}")
        passed &= verdict(f"  {stage} larger / smaller", large[stage] / small[stage], TARGET, at_least=False)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
