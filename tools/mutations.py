"""Hand-made mutations of the library, one at a time: does a test fail (kill it)? Not part of the default test run.

    python -m tools.mutations               # every mutation
    python -m tools.mutations I1 O12        # some, by id
    python -m tools.mutations --list

Each mutation replaces one or more exact snippets of one file (each must occur exactly once, else the mutation is
reported as stale), runs its pytest selection in a subprocess (PYTHONPATH = this checkout, one OpenMP thread, -x),
and restores the file in a `finally`, so Ctrl-C or SIGTERM leave no mutation behind. Prints one line per mutation
(killed by which test, or SURVIVED) and the kill rate. Before mutating, each selection is run once unmutated and must
pass (--no-baseline skips that).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    id: str
    file: str
    edits: tuple[tuple[str, str], ...]  # (original snippet, mutated snippet)
    tests: tuple[str, ...]  # pytest arguments: files or node ids, then optionally -k and an expression (last)
    what: str


def m(id: str, file: str, old: str, new: str, tests: str, what: str, *more: tuple[str, str]) -> Mutation:
    return Mutation(id, file, ((old, new), *more), tuple(tests.split()), what)


GRAPHCUT_FAST = "tests/test_graphcut.py -k not pool"  # the pool tests start worker processes: slow, and covered

MUTATIONS: list[Mutation] = [
    # The survivors listed in issue 12, item 11.
    m("I1", "dgcn/inference.py", "scores[len(x):].flip(-1)\n", "scores[len(x):]\n",
      "tests/test_inference.py", "mirrored pass not flipped back"),
    m("I2", "dgcn/inference.py", "total = scores if total is None else total + scores", "total = scores",
      "tests/test_inference.py", "only the last scale kept"),
    m("I3", "dgcn/pseudo_labels.py", "probs = restrict_to_classes(prediction.probs, present)",
      "probs = prediction.probs", "tests/test_pseudo_labels.py", "export's restrict_to_classes dropped"),
    m("I4", "dgcn/crf.py", "sxy=bilateral_sxy * scale, srgb=bilateral_srgb",
      "sxy=bilateral_srgb * scale, srgb=bilateral_sxy", "tests/test_crf.py", "bilateral sxy and srgb swapped"),
    m("I5", "dgcn/crf.py", "crf.inference(iterations)", "crf.inference(10)", "tests/test_crf.py",
      "CRF iterations ignored"),
    m("I6", "dgcn/graphcut.py", "(src, dst), seed_capacity)", "(src, dst), 10.0)", GRAPHCUT_FAST,
      "graph cut seed_capacity ignored"),
    m("I7", "dgcn/graphcut.py", "confident = flat_probs[c] > threshold", "confident = flat_probs[c] >= threshold",
      GRAPHCUT_FAST, "> changed to >= in the 0.7 rule"),
    m("I8", "dgcn/storage/labels.py", 'np.asarray(self.names, dtype=str)', 'np.asarray(sorted(self.names), dtype=str)',
      "tests/test_label_store_order.py tests/test_storage.py", "label store names written sorted"),
    m("I9", "dgcn/training/loop.py", "default_rng([seed, epoch])", "default_rng([0, epoch])",
      "tests/test_training_loop.py", "epoch_batches ignores the seed"),
    # Further mutations of recently written code.
    m("O1", "dgcn/inference.py", "if scale == 1.0 or features is None:", "if features is None:",
      "tests/test_inference.py", "features taken from the first scale, not scale 1"),
    m("O2", "dgcn/pseudo_labels.py", "supervision[position],", "supervision[0],", "tests/test_pseudo_labels.py",
      "every image of a shape group gets the first image's grown masks"),
    m("O3", "dgcn/evidence.py", "gather(0, label) >= GROWN_COVER", "gather(0, label) > GROWN_COVER",
      "tests/test_evidence.py", "grown cover reached only strictly above 0.5"),
    m("O4", "dgcn/evidence.py", "+ (1.0 - confidence) * probs", "+ probs", "tests/test_evidence.py",
      "CRF unary: the network's share not scaled by 1 - confidence"),
    m("O5", "dgcn/evidence.py", "classes[up[2].argmax(dim=0).numpy()]", "classes[up[0].argmax(dim=0).numpy()]",
      "tests/test_evidence.py tests/test_pseudo_labels.py", "network_argmax includes the grown masks"),
    m("O6", "dgcn/evidence.py", "(probs > threshold).astype(np.uint8)", "(probs >= threshold).astype(np.uint8)",
      "tests/test_evidence.py", "evidence_from_labels grows at exactly the threshold"),
    m("O7", "dgcn/data/augment.py", "(2 * np.arange(out_size, dtype=np.int64) + 1) * in_size // (2 * out_size)",
      "np.arange(out_size, dtype=np.int64) * in_size // out_size", "tests/test_crops.py tests/test_pseudo_labels.py",
      "nearest neighbour on pixel corners, not centres"),
    m("O8", "dgcn/data/augment.py", "part = values[self.top:self.top + self.size, self.left:self.left + self.size]",
      "part = values[self.left:self.left + self.size, self.top:self.top + self.size]", "tests/test_crops.py",
      "crop window with top and left swapped"),
    m("O9", "dgcn/data/augment.py", "rng.integers(self.resize_long[0], self.resize_long[1] + 1)",
      "rng.integers(self.resize_long[0], self.resize_long[1])", "tests/test_crops.py",
      "resize_long never draws its upper bound"),
    m("O10", "dgcn/data/augment.py", "rng.uniform(max(0.0, 1 - amount), 1 + amount)",
      "rng.uniform(1 - amount, 1 + amount)", "tests/test_crops.py tests/test_params.py",
      "colour jitter factor not floored at 0 (equivalent for params, which cap amounts at 1)"),
    m("O11", "dgcn/data/crops.py", "torch.from_numpy(_mirror(labels, key.flip)).long()",
      "torch.from_numpy(_mirror(labels, False)).long()", "tests/test_crops.py tests/test_training_loop.py",
      "retraining labels not mirrored with their image"),
    m("O12", "dgcn/data/crops.py", "_mirror(crop.valid_grid(self.grid), key.flip)", "crop.valid_grid(self.grid)",
      "tests/test_crops.py tests/test_training_loop.py", "DGCN padding mask not mirrored with its image"),
    m("O13", "dgcn/data/crops.py", "default_rng([key.seed, key.epoch, key.index])",
      "default_rng([key.seed, key.index])",
      "tests/test_crops.py tests/test_training_loop.py", "a sample's augmentation ignores the epoch"),
    m("O14", "dgcn/storage/evidence.py", "self._grids[i] = (height, width)", "self._grids[i] = (width, height)",
      "tests/test_evidence.py", "evidence store grids written transposed"),
    m("O15", "dgcn/storage/evidence.py", "self._image_labels[i] = item.present", "pass",
      "tests/test_evidence.py", "evidence store image labels never written"),
    m("O16", "stages/params.py", 'extra="forbid", frozen=True, strict=True, allow_inf_nan=False',
      'extra="forbid", frozen=True, strict=True, allow_inf_nan=True', "tests/test_params.py",
      "params accept NaN and infinity"),
    m("O17", "stages/params.py", "close = difflib.get_close_matches(str(loc[-1]), known, n=1)", "close = []",
      "tests/test_params.py tests/test_stage_errors.py -k params or param or unknown or arch_options",
      "no 'did you mean' for an unknown key"),
    m("O18", "dgcn/cues.py", "if (module, name) not in self._ALLOWED:", "if False:",
      "tests/test_safe_loading.py tests/test_cues.py", "cue unpickler admits any class"),
    m("O19", "dgcn/cues.py", 'module = module.replace("numpy.core.", "numpy._core.")', "pass",
      "tests/test_safe_loading.py tests/test_cues.py", "numpy 1 / Python 2 module names refused"),
    m("O20", "dgcn/workers.py", "initializer=die_with_parent, initargs=(os.getpid(),)", "",
      "tests/test_workers.py", "pool workers do not die with their parent"),
    m("O21", "stages/app.py", "previous = signal.signal(signal.SIGTERM, _terminated)",
      "previous = signal.getsignal(signal.SIGTERM)", "tests/test_workers.py", "SIGTERM does not unwind the stage"),
    m("O22", "dgcn/training/loop.py", "            part.load_state_dict(fresh[key])\n", "            pass\n",
      "tests/test_training_loop.py -k damaged", "a half-loaded damaged checkpoint leaves its weights"),
    m("O23", "dgcn/training/loop.py", "        checkpoint.replace(aside)\n", "",
      "tests/test_training_loop.py -k damaged", "a damaged checkpoint is not set aside"),
    m("O24", "stages/retrain.py", "    discard_checkpoint(checkpoint)\n", "",
      "tests/test_stage_errors.py -k checkpoint", "retrain keeps its finished checkpoint"),
    m("O25", "dgcn/training/loop.py", "        checkpoint.parent.rmdir()", "        pass",
      "tests/test_stage_errors.py -k checkpoint", "the empty checkpoint folder is kept"),
    m("O26", "dgcn/training/loop.py", "        return TrainingLog(epochs=[], steps=[]), 0\n    log_line(",
      "        raise\n    log_line(",
      "tests/test_safe_loading.py tests/test_training_loop.py -k damaged or crafted_checkpoint",
      "a damaged checkpoint still fails the run"),
    # The survivors listed in issue 25, item 10.
    m("R1", "dgcn/distributed.py",
      "return range(rank() * count // world_size(), (rank() + 1) * count // world_size())",
      "return range(rank() * (count // world_size()), (rank() + 1) * (count // world_size()))",
      "tests/test_distributed.py::test_the_ranks_blocks_cover_every_item_once",
      "my_block loses the remainder when the count does not divide by the world size"),
    m("R2", "dgcn/data/coco.py", "painted.append((-int(pixels.sum()), len(painted)",
      "painted.append((int(pixels.sum()), len(painted)", "tests/test_coco.py -k on_top or render",
      "COCO instances painted smallest first"),
    m("R3", "dgcn/graphcut.py", "        src, dst = src[inside], dst[inside]\n", "", GRAPHCUT_FAST,
      "grow_supervision keeps the edges into padded nodes"),
    m("R4", "dgcn/metrics.py", "present = union > 0", "present = gt_total > 0", "tests/test_metrics.py",
      "mIoU averaged over the ground-truth classes only"),
    # Further mutations of the fixes for issue 25, items 7 and 8.
    m("R5", "dgcn/storage/zarr_store.py", "if isinstance(selection, slice) and image is not None:", "if False:",
      "tests/test_store_integrity.py -k block", "a damaged block names its first image, not the damaged one"),
    m("R6", "dgcn/data/files.py", 'if not image.mode.startswith("I;16"):', "if True:", "tests/test_image_files.py",
      "16-bit grey clipped to white"),
    m("R7", "dgcn/data/generic.py", "if first != name and self.has_mask(name):", "if False:",
      "tests/test_generic.py -k stem", "two images of one stem silently share a mask"),
    m("R8", "stages/app.py", "            settle_zarr_io()\n", "", "tests/test_stage_errors.py -k nothing_after",
      "the Zarr reads a damaged shard left running are torn down at exit (asyncio noise after the error)"),
]


def pytest_command(tests: tuple[str, ...]) -> list[str]:
    """pytest on the selection: files and node ids as given, `-k EXPR` (EXPR: the rest of the words) as one option."""
    args = list(tests)
    if "-k" in args:
        at = args.index("-k")
        args = [*args[:at], "-k", " ".join(args[at + 1:])]
    return [sys.executable, "-m", "pytest", "-x", "-q", "-rfE", "-p", "no:cacheprovider", *args]


def run_tests(tests: tuple[str, ...], timeout: float) -> tuple[bool, str]:
    """(passed, the first failing test or a reason)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    try:
        done = subprocess.run(pytest_command(tests), cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"timeout after {timeout:.0f} s"
    if done.returncode == 0:
        return True, ""
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", done.stdout, re.MULTILINE)
    return False, failed[0] if failed else f"pytest exit {done.returncode}: {done.stdout.strip()[-200:]}"


def mutate(mutation: Mutation, timeout: float) -> str:
    """Apply, test, restore (always); the outcome as text."""
    path = REPO / mutation.file
    original = path.read_text()
    text = original
    for old, new in mutation.edits:
        if text.count(old) != 1:
            return f"STALE ({old[:40]!r} found {text.count(old)} times)"
        text = text.replace(old, new)
    try:
        path.write_text(text)
        passed, failure = run_tests(mutation.tests, timeout)
    finally:
        path.write_text(original)
    return "SURVIVED" if passed else f"killed by {failure}"


def _interrupted(signum: int, frame: object) -> None:
    """SIGTERM as Ctrl-C: the `finally` in mutate restores the file either way."""
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ids", nargs="*", help="mutation ids (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of each selection")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per pytest run")
    options = parser.parse_args()
    chosen = [mutation for mutation in MUTATIONS if not options.ids or mutation.id in options.ids]
    if options.list:
        for mutation in chosen:
            print(f"{mutation.id:4} {mutation.file}: {mutation.what}  [{' '.join(mutation.tests)}]")
        return
    signal.signal(signal.SIGTERM, _interrupted)
    if not options.no_baseline:
        for tests in dict.fromkeys(mutation.tests for mutation in chosen):
            passed, failure = run_tests(tests, options.timeout)
            if not passed:
                sys.exit(f"baseline fails, fix it first: {' '.join(tests)}: {failure}")
    killed = stale = 0
    for mutation in chosen:
        began = time.perf_counter()
        outcome = mutate(mutation, options.timeout)
        killed += outcome.startswith("killed")
        stale += outcome.startswith("STALE")
        print(f"{mutation.id:4} {mutation.file}: {mutation.what}: {outcome} ({time.perf_counter() - began:.0f} s)",
              flush=True)
    print(f"kill rate: {killed}/{len(chosen) - stale}" + (f" ({stale} stale, not counted)" if stale else ""))


if __name__ == "__main__":
    main()
