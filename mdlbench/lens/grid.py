"""Width against depth under a prequential code: one independent prequential run per (n_layer, ffn_ratio) cell.

A grid file (TOML, strict: unknown keys are errors):

    n_layer = [1, 2, 4]          # depths
    ffn_ratio = [1, 2, 4, 8]     # d_ff / d_model
    match_params = 100000        # optional: per cell, the d_model whose model has the parameter count nearest this
    d_model = 64                 # without match_params: one width for every cell (default: the base arch's)
    d_model_step = 8             # d_model is a multiple of this (default: heads for GPT-2, 2 × heads for rotary ones)
    [arch]                       # optional base architecture (default: prequential's DEFAULT_ARCH, a small GPT-2)
    n_head = 4

Each cell is a plain prequential run (``run_prequential_for_corpus``) with the cell's architecture, so it is
content-addressed and reused like any other; its ``prequential`` rows carry n_layer, d_model, d_ff, ffn_ratio and
n_params. Parameter counts are exact: each candidate model is built on the meta device and counted
(``mdl.params.count_parameters``), tied output layer once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mdlbench.errors import InputError
from mdlbench.mdl.params import count_parameters
from mdlbench.prequential.driver import run_prequential_for_corpus
from mdlbench.prequential.estimators import DEFAULT_ARCH, PrequentialConfig, _hf_config, resolve_arch
from mdlbench.prequential.vocab import separator_id
from mdlbench.progress import Log, Progress, log_to_stderr

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# Config keys of depth, width and FFN width, per model type.
SHAPE_KEYS: Mapping[str, tuple[str, str, str, str]] = {
    "gpt2": ("n_layer", "n_embd", "n_inner", "n_head"),
    **{t: ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads")
       for t in ("llama", "mistral", "qwen2", "qwen3", "gpt_neox")},
}
GRID_KEYS = ("n_layer", "ffn_ratio", "match_params", "d_model", "d_model_step", "arch")


@dataclass(frozen=True)
class ArchGrid:
    n_layer: tuple[int, ...]
    ffn_ratio: tuple[float, ...]
    match_params: int | None = None
    d_model: int | None = None
    d_model_step: int | None = None
    arch: dict[str, Any] = field(default_factory=dict)  # base architecture; {} = DEFAULT_ARCH


@dataclass(frozen=True)
class GridCell:
    n_layer: int
    ffn_ratio: float
    d_model: int
    d_ff: int
    n_params: int
    arch: dict[str, Any]  # what prequential builds (before its vocab/position resolution)


def _ints(value: Any, key: str, path: Path) -> tuple[int, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                                           for v in value):
        raise InputError(f"{path}: {key} must be a non-empty list of positive integers, e.g. {key} = [1, 2, 4]")
    return tuple(value)


def load_grid(path: Path | str) -> ArchGrid:
    """Read and check a grid file; every problem is one InputError naming the key and the fix."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise InputError(f"--arch-grid {str(path)!r}: cannot read it ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"--arch-grid {str(path)!r}: not valid TOML ({exc})") from None
    unknown = sorted(set(data) - set(GRID_KEYS))
    if unknown:
        raise InputError(f"{path}: unknown key(s) {', '.join(map(repr, unknown))}; known: {', '.join(GRID_KEYS)}")
    for key in ("n_layer", "ffn_ratio"):
        if key not in data:
            raise InputError(f"{path}: {key} is required (e.g. n_layer = [1, 2, 4], ffn_ratio = [1, 2, 4, 8])")
    ratios = data["ffn_ratio"]
    if not isinstance(ratios, list) or not ratios or not all(
            isinstance(r, (int, float)) and not isinstance(r, bool) and r > 0 for r in ratios):
        raise InputError(f"{path}: ffn_ratio must be a non-empty list of positive numbers, e.g. [1, 2, 4, 8]")
    scalars = {}
    for key in ("match_params", "d_model", "d_model_step"):
        value = data.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise InputError(f"{path}: {key} must be a positive integer")
        scalars[key] = value
    if scalars["match_params"] is not None and scalars["d_model"] is not None:
        raise InputError(f"{path}: give match_params (d_model chosen per cell) or d_model (fixed), not both")
    arch = data.get("arch", {})
    if not isinstance(arch, dict):
        raise InputError(f"{path}: [arch] must be a table of transformers config keys")
    return ArchGrid(_ints(data["n_layer"], "n_layer", path), tuple(float(r) for r in ratios), **scalars,
                    arch=dict(arch))


def _base_arch(grid: ArchGrid, context_tokens: int) -> dict[str, Any]:
    if not grid.arch:
        # As prequential's default: a position table of exactly the context it is trained and coded on.
        return {**DEFAULT_ARCH, "n_positions": context_tokens}
    if "model_type" not in grid.arch:
        raise InputError("--arch-grid: [arch] needs a 'model_type' key (e.g. \"gpt2\", \"llama\")")
    return dict(grid.arch)


def cell_arch(base: Mapping[str, Any], n_layer: int, d_model: int, ffn_ratio: float) -> dict[str, Any]:
    """The base architecture with this depth, width and FFN width (d_ff = round(ffn_ratio · d_model) >= 1)."""
    model_type = str(base["model_type"])
    if model_type not in SHAPE_KEYS:
        raise InputError(f"--arch-grid: model type {model_type!r} has no known depth/width keys; supported: "
                         f"{', '.join(sorted(SHAPE_KEYS))}")
    layers_key, width_key, ffn_key, _ = SHAPE_KEYS[model_type]
    return {**base, layers_key: n_layer, width_key: d_model, ffn_key: max(1, round(ffn_ratio * d_model))}


def count_arch_params(arch: Mapping[str, Any], *, vocab_size: int, context_tokens: int, start_id: int) -> int:
    """Unique parameters of the model prequential builds from ``arch`` (on the meta device: no memory, no init)."""
    import torch
    from transformers import AutoModelForCausalLM

    resolved = resolve_arch(arch, vocab_size=vocab_size, context_tokens=context_tokens, start_id=start_id)
    with torch.device("meta"), _no_init():
        model = AutoModelForCausalLM.from_config(_hf_config(resolved))
    model.tie_weights()  # skipped initialisation also skips tying; the count must see the tie
    return count_parameters(model).params_total


def _no_init() -> Any:
    """transformers' switch that skips weight initialisation (the cost of counting on meta tensors), where it
    exists."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # older transformers
        from contextlib import nullcontext

        return nullcontext()
    return no_init_weights()


def nearest_width(count: Callable[[int], int], target: int, step: int) -> int:
    """The multiple of ``step`` whose count is nearest ``target`` (ties: the narrower), for a count increasing in
    the width. Example: count(d) = d², target 1000, step 8 -> 32 (1024 beats 576 and 1600)."""
    hi = 1
    while count(hi * step) < target:
        hi *= 2
    lo = 1 if hi == 1 else hi // 2
    while lo < hi:  # smallest k with count(k · step) >= target
        mid = (lo + hi) // 2
        if count(mid * step) >= target:
            hi = mid
        else:
            lo = mid + 1
    candidates = [k for k in (hi - 1, hi) if k >= 1]
    best = min(candidates, key=lambda k: (abs(count(k * step) - target), k))
    return best * step


def grid_cells(grid: ArchGrid, *, vocab_size: int, context_tokens: int, start_id: int) -> list[GridCell]:
    """Every (n_layer, ffn_ratio) cell, depth-major, with its width and exact parameter count."""
    base = _base_arch(grid, context_tokens)
    heads_key = SHAPE_KEYS.get(str(base["model_type"]), ("", "", "", "n_head"))[3]
    heads = int(base.get(heads_key, 1) or 1)
    # Whole head dimensions; even ones where rotary embeddings split them in halves (every type but GPT-2).
    step = grid.d_model_step or heads * (1 if base["model_type"] == "gpt2" else 2)
    width_key = SHAPE_KEYS.get(str(base["model_type"]), ("", "n_embd", "", ""))[1]
    cache: dict[tuple[int, int, float], int] = {}

    def count(n_layer: int, d_model: int, ratio: float) -> int:
        key = (n_layer, d_model, ratio)
        if key not in cache:
            cache[key] = count_arch_params(cell_arch(base, n_layer, d_model, ratio), vocab_size=vocab_size,
                                           context_tokens=context_tokens, start_id=start_id)
        return cache[key]

    cells = []
    for n_layer in grid.n_layer:
        for ratio in grid.ffn_ratio:
            if grid.match_params is not None:
                d_model = nearest_width(lambda d, n=n_layer, r=ratio: count(n, d, r), grid.match_params, step)
            else:
                d_model = grid.d_model or int(base.get(width_key) or 0)
                if d_model < 1:
                    raise InputError("--arch-grid: give d_model or match_params (the base arch has no width)")
                if d_model % step:
                    raise InputError(f"--arch-grid: d_model {d_model} is not a multiple of d_model_step {step}")
            arch = cell_arch(base, n_layer, d_model, ratio)
            cells.append(GridCell(n_layer, ratio, d_model, max(1, round(ratio * d_model)), count(n_layer, d_model,
                                                                                                 ratio), arch))
    return cells


def run_grid(corpus: Any, grid: ArchGrid, *, tokenizer: Any, seeds: Sequence[int], config: Any = None,
             out_dir: Path | None = None, force: bool = False, log: Log | None = log_to_stderr,
             progress: Progress | None = None) -> list[tuple[GridCell, Any]]:
    """One prequential run per cell (reused when already complete); [(cell, PrequentialRun)] in grid order."""
    config = config if isinstance(config, PrequentialConfig) else PrequentialConfig.from_dict(config or {})
    cells = grid_cells(grid, vocab_size=len(tokenizer), context_tokens=config.context_tokens,
                       start_id=separator_id(tokenizer))
    out = []
    for i, cell in enumerate(cells, 1):
        if log:
            off = "" if grid.match_params is None else \
                f" ({100 * (cell.n_params - grid.match_params) / grid.match_params:+.1f}% of match_params)"
            log(f"[arch-grid {i}/{len(cells)}] n_layer {cell.n_layer}, ffn_ratio {cell.ffn_ratio:g}: d_model "
                f"{cell.d_model}, d_ff {cell.d_ff}, {cell.n_params:,} parameters{off}")
        run = run_prequential_for_corpus(corpus, config=config, arch=cell.arch, seeds=seeds, tokenizer=tokenizer,
                                         out_dir=out_dir, force=force, log=log, progress=progress)
        out.append((cell, run))
    return out
