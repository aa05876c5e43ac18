"""Start-up and no-op reruns: how long `mdlbench --help` takes, and a nightly job over N finished checkpoints.

    python benchmarks/bench_startup.py --checkpoints 50 [--baseline-commit d028630]

Builds N small GPT-2 checkpoints (seeded, each with its own weights) and a small corpus, runs the job once, then
times its rerun (every run already complete) in fresh processes, and records whether the rerun imported torch or
transformers. With ``--baseline-commit``, the same rerun and `--help` are timed for that commit of mdlbench, run
from a `git worktree` beside this one, in the same session, so the two are compared side by side.
Results: benchmarks/results/startup-cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "startup-cpu.json"
PROBE = ("import sys, time; t = time.perf_counter(); from mdlbench.cli import main; code = main(sys.argv[1:]); "
         "print('PROBE', code, 'torch' in sys.modules, 'transformers' in sys.modules, time.perf_counter() - t, "
         "file=sys.stderr)")


def build_checkpoints(folder: Path, n: int) -> list[Path]:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    corpus = "\n".join(p.read_text("utf-8") for p in sorted((stdlib / "json").glob("*.py")))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([corpus], trainers.BpeTrainer(vocab_size=2048, special_tokens=["<|endoftext|>"],
                                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    paths = []
    for i in range(n):
        torch.manual_seed(i)
        config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=128, n_layer=2, n_head=2,
                            bos_token_id=0, eos_token_id=0)
        path = folder / f"ckpt-{i:03d}"
        GPT2LMHeadModel(config).save_pretrained(path)
        tokenizer.save_pretrained(path)
        paths.append(path)
    return paths


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=3600)
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed: {r.stderr[-2000:]}")
    return seconds, r.stderr


def measure(tree: Path, job: Path, out: Path, repeats: int, env: dict[str, str]) -> dict[str, object]:
    env = {**env, "PYTHONPATH": str(tree)}
    helps = [timed([sys.executable, "-m", "mdlbench", "--help"], env, tree)[0] for _ in range(repeats)]
    first, _ = timed([sys.executable, "-m", "mdlbench", "run", str(job), "--out", str(out), "--quiet"], env, tree)
    reruns, probe = [], ""
    for _ in range(repeats):
        seconds, err = timed([sys.executable, "-c", PROBE, "run", str(job), "--out", str(out), "--quiet"], env, tree)
        reruns.append(seconds)
        probe = next(line for line in err.splitlines() if line.startswith("PROBE"))
    _, code, torch_loaded, transformers_loaded, _ = probe.split()
    return {"help_seconds": helps, "help_median_seconds": statistics.median(helps), "first_run_seconds": first,
            "rerun_seconds": reruns, "rerun_median_seconds": statistics.median(reruns),
            "rerun_imported_torch": torch_loaded == "True",
            "rerun_imported_transformers": transformers_loaded == "True", "rerun_exit_code": int(code)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-commit", help="also time this commit of mdlbench (from a git worktree)")
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    results: dict[str, object] = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                                  "checkpoints": args.checkpoints, "repeats": args.repeats}
    with tempfile.TemporaryDirectory(prefix="mdlbench-startup-") as tmp:
        work = Path(tmp)
        env["MDLBENCH_CACHE"] = str(work / "cache")
        paths = build_checkpoints(work, args.checkpoints)
        corpus = work / "corpus.jsonl"
        corpus.write_text("".join(json.dumps({"text": f"document {i}: " + "a sentence of text. " * 5}) + "\n"
                                  for i in range(8)), "utf-8")
        job = work / "nightly.toml"
        job.write_text(f"models = {json.dumps([str(p) for p in paths])}\ncorpora = [{json.dumps(str(corpus))}]\n"
                       "[options]\nwindow = 64\nbaselines = [\"gzip-9\"]\ntwo_part = [\"naive\"]\n")
        results["checkpoint_bytes"] = sum(f.stat().st_size for p in paths for f in p.iterdir())
        results["current"] = measure(REPO, job, work / "out-current", args.repeats, env)
        if args.baseline_commit:
            tree = work / "baseline-tree"
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), args.baseline_commit],
                           check=True, capture_output=True)
            try:
                results["baseline_commit"] = args.baseline_commit
                results["baseline"] = measure(tree, job, work / "out-baseline", args.repeats, env)
            finally:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
