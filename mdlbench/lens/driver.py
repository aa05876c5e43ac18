"""`mdlbench lens`: one model load, one base pass with activity hooks, then every variant re-scored on the same
documents with the same windows, so every ``data_bits`` is directly comparable with the run's code length.

Order: validate everything (settings, corpus, model type, folds, windowing) -> base pass (the unmodified model; it
is the ``mdlbench run`` of the same settings, and writes that run's tables when they are missing) -> each component
at each k -> the mixed-precision code -> pruning, cross-fitted by fold -> one atomic commit of ``component_codes``,
``ffn_activity``, ``ffn_pruning`` and the ``two_part`` rows. Nothing is written before the base pass starts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mdlbench import tables
from mdlbench.baselines.run import fold_of
from mdlbench.codelength import BITS_PER_BYTE, fsum_bits
from mdlbench.config import UNIFORM_BYTES
from mdlbench.corpora import Corpus, Document
from mdlbench.errors import InputError
from mdlbench.lens import activity, components, pruning, quantize, rows
from mdlbench.lens.layout import FfnLayout, ffn_layout
from mdlbench.mdl.two_part import Baseline, TwoPartCode, requested_codes, two_part_row, two_part_rows, vs_baseline_rows
from mdlbench.mdl.weights_code import ZSTD_LEVEL, rtn_detail, tokenizer_code
from mdlbench.progress import Log
from mdlbench.run.plan import PlannedRun
from mdlbench.run.state import RunState
from mdlbench.scoring.models import LoadedModel
from mdlbench.tables import RUN_NAMES


@dataclass(frozen=True)
class LensSettings:
    """What the lens measures, besides the run's own options (model, corpus, windows, dtype...)."""

    bits: tuple[int, ...] = (8, 4, 3, 2)  # quantizer widths for the component codes; () skips them
    per_layer: bool = False  # also one row per (component, layer), and pruning of one layer at a time
    prune: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75)  # fractions of d_ff removed in every layer; () skips pruning
    criteria: tuple[str, ...] = pruning.CRITERIA
    activity_threshold: float = 0.01  # τ of the non-ReLU rule |h| > τ · RMS(h)
    seed: int = 0  # of the random pruning control
    group_size: int | None = None  # columns per quantization scale (None: one per output channel, as quantized-k)
    zstd_level: int = ZSTD_LEVEL

    def __post_init__(self) -> None:
        if any(not 1 <= b <= 8 for b in self.bits) or len(set(self.bits)) != len(self.bits):
            raise InputError(f"--bits {','.join(map(str, self.bits))}: give distinct widths in 1..8, e.g. 8,4,3,2")
        if any(not 0 < f < 1 for f in self.prune) or len(set(self.prune)) != len(self.prune):
            raise InputError(f"--prune {','.join(map(str, self.prune))}: give distinct fractions strictly between "
                             "0 and 1, e.g. 0.1,0.25,0.5")
        unknown = [c for c in self.criteria if c not in pruning.CRITERIA]
        if unknown or not self.criteria or len(set(self.criteria)) != len(self.criteria):
            raise InputError(f"--criteria {','.join(self.criteria)}: choose distinct ones from "
                             f"{', '.join(pruning.CRITERIA)}")
        if not (self.activity_threshold >= 0 and math.isfinite(self.activity_threshold)):
            raise InputError(f"--activity-threshold {self.activity_threshold}: must be a finite number >= 0")
        if self.seed < 0:
            raise InputError(f"--seed {self.seed}: must be >= 0")


def parse_list(text: str, kind: type, flag: str) -> tuple[Any, ...]:
    """'8,4,3' -> (8, 4, 3); 'none' or '' -> ()."""
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        return tuple(kind(t.strip()) for t in text.split(",") if t.strip())
    except ValueError:
        raise InputError(f"{flag} {text!r}: expected comma-separated {kind.__name__} values, or 'none'") from None


# ------------------------------------------------------------------------------------------------- scoring passes


def fold_of_document(doc: Document) -> int:
    """Cross-fitting fold: sha256(UTF-8 bytes)[0] mod 2, the rule of the cross-fitted zstd dictionaries."""
    return fold_of(doc.text.encode("utf-8"))


def score_pass(scorer: Any, corpus: Corpus, chunk_docs: int,
               keep: Callable[[Document], bool] | None = None) -> dict[int, float]:
    """{doc_index: code length in bits} of the documents ``keep`` accepts (all when None), coded in pools of
    ``chunk_docs`` consecutive accepted documents. With ``keep=None`` the pools are exactly ``mdlbench run``'s
    chunks, so the numbers are its numbers bit for bit."""
    out: dict[int, float] = {}
    chunk: list[tuple[int, Document]] = []

    def flush() -> None:
        for code in scorer.score(chunk):
            out[code.doc_index] = code.code_length_bits

    for i, doc in enumerate(corpus.documents()):
        if keep is None or keep(doc):
            chunk.append((i, doc))
        if len(chunk) == chunk_docs:
            flush()
            chunk = []
    if chunk:
        flush()
    return out


@dataclass
class Timer:
    """Wall seconds of each part of the lens (printed, and in the README)."""

    parts: dict[str, float] = field(default_factory=dict)

    def add(self, part: str, seconds: float) -> None:
        self.parts[part] = self.parts.get(part, 0.0) + seconds


@dataclass
class Plan:
    """What will be re-scored: whole-corpus passes (component codes, mixed) and single-fold passes (pruning)."""

    component_variants: list[tuple[components.ComponentGroup, int]]
    exact_variants: list[tuple[components.ComponentGroup, int]]  # nothing rounded: data bits = base, no pass
    mixed: bool
    prune_variants: list[tuple[str, float, int]]  # (criterion, fraction, layer or -1)

    @property
    def n_whole(self) -> int:
        return len(self.component_variants) + int(self.mixed)

    @property
    def n_fold(self) -> int:
        return 2 * len(self.prune_variants)

    def describe(self) -> str:
        return (f"{self.n_whole} re-scorings of the whole corpus ({len(self.component_variants)} component × bits"
                f"{', at most 1 mixed-precision' if self.mixed else ''}) and {self.n_fold} of one fold "
                f"({len(self.prune_variants)} pruning variants × 2 folds)")


def make_plan(groups: Sequence[components.ComponentGroup], layout: FfnLayout, settings: LensSettings) -> Plan:
    chosen = [g for g in groups if g.layer == components.ALL_LAYERS or settings.per_layer]
    variants = [(g, k) for g in chosen for k in settings.bits]
    scopes = [components.ALL_LAYERS] + ([layer.index for layer in layout.layers] if settings.per_layer else [])
    prune_variants = [(c, f, s) for c in settings.criteria for f in settings.prune for s in scopes]
    return Plan([v for v in variants if v[0].n_quantized > 0], [v for v in variants if v[0].n_quantized == 0],
                bool(settings.bits), prune_variants)


class Eta:
    """Seconds left, from the base pass's rate corrected by the re-scorings measured so far."""

    def __init__(self, base_seconds: float, fold_share: Sequence[float], plan: Plan) -> None:
        self.base = base_seconds
        self.fold_share = fold_share
        self.left = plan.n_whole * base_seconds + len(plan.prune_variants) * base_seconds
        self.estimated_done = 0.0
        self.measured_done = 0.0

    def estimate(self, fold: int | None) -> float:
        return self.base * (1.0 if fold is None else self.fold_share[fold])

    def done(self, estimated: float, measured: float) -> None:
        self.left -= estimated
        self.estimated_done += estimated
        self.measured_done += measured

    def seconds_left(self) -> float:
        ratio = self.measured_done / self.estimated_done if self.estimated_done > 0 else 1.0
        return max(0.0, self.left * ratio)


def _fmt_seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def pruning_keep(collector: activity.ActivityCollector, criterion: str, fraction: float, layers: Sequence[int], *,
                 rank_fold: int, seed: int) -> dict[int, np.ndarray]:
    """Kept neurons per layer when ``fraction`` of each is removed by ``criterion``, ranked on the documents of
    ``rank_fold`` only (the activity groups are (domain, fold))."""
    keep = {}
    for index in layers:
        stats = collector.layer_stats(index, lambda key: key[1] == rank_fold)
        order = pruning.removal_order(criterion, active_counts=stats.active_counts, abs_h_sum=stats.abs_h_sum,
                                      seed=seed, layer=index)
        keep[index] = pruning.kept_neurons(order, pruning.n_to_remove(fraction, stats.d_ff))
    return keep


# ------------------------------------------------------------------------------------------------- the lens


@dataclass
class LensResult:
    run_id: str
    component_rows: list[dict[str, Any]]
    activity_rows: list[dict[str, Any]]
    pruning_rows: list[dict[str, Any]]
    two_part_rows: list[dict[str, Any]]
    base_doc_bits: dict[int, float]
    base_reproduced: bool | None  # None: the run was computed by this pass; else whether it matched bit for bit
    timer: Timer
    plan: Plan
    collector: activity.ActivityCollector | None = None


@dataclass(frozen=True, slots=True)
class LensInputs:
    layout: FfnLayout
    groups: Sequence[components.ComponentGroup]
    plan: Plan
    folds: dict[str, int]  # doc_id -> cross-fitting fold


def lens_inputs(model: Any, corpus: Corpus, settings: LensSettings) -> LensInputs:
    """The model's FFN layout, its component groups, the pass plan and each document's fold; InputError for
    what the lens cannot do (an unsupported model type; pruning when every document falls in one fold), so that
    ``run --lens`` can refuse it before the run writes anything."""
    layout = ffn_layout(model)
    groups = components.component_groups(model)
    plan = make_plan(groups, layout, settings)
    folds = {doc.doc_id: fold_of_document(doc) for doc in corpus.documents()}
    if plan.prune_variants and len({*folds.values()}) < 2:
        raise InputError(f"pruning is cross-fitted (rank on one fold, score the other) but all {len(folds)} "
                         f"documents of {corpus.name} fall in one fold (sha256(doc)[0] mod 2); give a corpus with "
                         "more documents or pass --prune none")
    return LensInputs(layout, groups, plan, folds)


class Lens:
    """The lens on one loaded model and one corpus, attached to the planned run of that pair (``mdlbench lens``
    builds it in run/lens.py, ``lens = true`` in run/execute.py after the run).

    ``compute_run`` scores and commits the run itself, with every chunk scored (it is called inside the activity
    hooks when the run is not complete, or with ``--force``); without it the run must be complete."""

    def __init__(self, loaded: LoadedModel, corpus: Corpus, run_plan: PlannedRun, options: Any,
                 settings: LensSettings, out_dir: Path, log: Log,
                 compute_run: Callable[[], Any] | None = None) -> None:
        self.loaded = loaded
        self.compute_run = compute_run
        self.model = loaded.model
        self.corpus = corpus
        self.run_plan = run_plan
        self.scorer = run_plan.scorer
        self.options = options
        self.settings = settings
        self.out_dir = Path(out_dir)
        self.log = log
        inputs = lens_inputs(self.model, corpus, settings)  # InputError for what the lens cannot do
        self.layout, self.groups, self.plan, self.folds = inputs.layout, inputs.groups, inputs.plan, inputs.folds
        self.fold_docs = [sum(1 for f in self.folds.values() if f == k) for k in (0, 1)]
        self.timer = Timer()
        self.chunk_docs = options.checkpoint_docs
        self._base_bits: dict[int, float] = {}  # of the base pass, filled by run()
        self._base_total = 0.0

    # -- passes ------------------------------------------------------------------------------------------------
    def _group_of(self, doc: Document) -> tuple[str, int]:
        return doc.domain or "", self.folds[doc.doc_id]

    def _base_pass(self, collector: activity.ActivityCollector) -> tuple[dict[int, float], dict[int, int],
                                                                         bool | None]:
        """Per-document bits and tokens of the unmodified model, with the activity hooks on."""
        run_id = self.run_plan.run_id
        complete = RunState(self.out_dir, run_id).is_complete()
        with collector.observing(self.scorer):
            if not complete or self.options.force:
                if self.compute_run is None:
                    raise InputError(f"run {run_id} is not complete in {self.out_dir}: run it first")
                # The run itself, as `mdlbench run` computes it (its tables are committed), every chunk scored.
                self.compute_run()
                stored = tables.read_partition(self.out_dir, "documents", run_id)
                return (dict(zip(stored["doc_index"].astype(int), stored["code_length_bits"].astype(float),
                                 strict=True)),
                        dict(zip(stored["doc_index"].astype(int), stored["n_tokens"].astype(int), strict=True)),
                        None)
            codes: dict[int, float] = {}
            n_tokens: dict[int, int] = {}
            chunk: list[tuple[int, Document]] = []
            for i, doc in enumerate([*self.corpus.documents(), None]):
                if doc is not None:
                    chunk.append((i, doc))
                if chunk and (doc is None or len(chunk) == self.chunk_docs):
                    for code in self.scorer.score(chunk):
                        codes[code.doc_index] = code.code_length_bits
                        n_tokens[code.doc_index] = code.n_tokens
                    chunk = []
        stored = tables.read_partition(self.out_dir, "documents", run_id)
        same = dict(zip(stored["doc_index"].astype(int), stored["code_length_bits"].astype(float), strict=True))
        reproduced = same == codes
        if not reproduced:
            diff = max(abs(same.get(i, math.inf) - b) for i, b in codes.items()) if codes else math.inf
            self.log(f"warning: the base pass differs from the stored run {run_id} by up to {diff:.3g} bits per "
                     "document (another thread count or machine?); the lens compares every variant with its own "
                     "base pass")
        return codes, n_tokens, reproduced

    def _rescore(self, fold: int | None) -> dict[int, float]:
        keep = None if fold is None else (lambda d: self.folds[d.doc_id] == fold)
        return score_pass(self.scorer, self.corpus, self.chunk_docs, keep)

    # -- the whole lens ----------------------------------------------------------------------------------------
    def run(self) -> LensResult:
        s = self.settings
        self.log(f"[lens] {self.loaded.name} × {self.corpus.name}: {self.layout.model_type}, "
                 f"{len(self.layout.layers)} layers, d_ff {self.layout.d_ff}, activation {self.layout.activation!r}")
        self.log(f"[lens] planned: 1 base pass with activity hooks + {self.plan.describe()}")
        collector = activity.ActivityCollector(self.layout, threshold=s.activity_threshold, group_of=self._group_of)
        t0 = time.perf_counter()
        base_bits, base_tokens, reproduced = self._base_pass(collector)
        base_seconds = time.perf_counter() - t0
        self.timer.add("base pass (with activity hooks)", base_seconds)
        if reproduced:
            self.log(f"[lens] base pass reproduces run {self.run_plan.run_id} bit for bit")
        base_total = fsum_bits(list(base_bits.values()))
        self._base_bits, self._base_total = base_bits, base_total
        tokens_by_fold = [0, 0]
        for i, doc in enumerate(self.corpus.documents()):
            tokens_by_fold[self.folds[doc.doc_id]] += base_tokens.get(i, 0) + 1
        share = [t / max(1, sum(tokens_by_fold)) for t in tokens_by_fold]
        eta = Eta(base_seconds, share, self.plan)
        self.log(f"[lens] base pass {base_seconds:.1f} s, {base_total:,.1f} bits; estimated "
                 f"{_fmt_seconds(eta.seconds_left())} for the re-scorings (plus zstd-19 of the k-bit codes, "
                 "overlapped with them)")
        refs, note = components.references(self.model, self.groups, self.loaded.gguf_file)
        if note:
            self.log(f"[lens] {note}; using the naive storage width")
        act_rows = self._activity_rows(collector)
        counter = [0, self.plan.n_whole + len(self.plan.prune_variants)]
        comp_rows = self._component_rows(base_total, refs, eta, counter)
        two_part = self._mixed(comp_rows, base_total, eta, counter) if self.plan.mixed else []
        prune_rows = self._pruning_rows(collector, base_total, eta, counter)
        result = LensResult(self.run_plan.run_id, comp_rows, act_rows, prune_rows, two_part, base_bits, reproduced,
                            self.timer, self.plan, collector)
        self._commit(result)
        return result

    def _announce(self, counter: list[int], label: str, seconds: float, eta: Eta) -> None:
        counter[0] += 1
        self.log(f"[lens {counter[0]}/{counter[1]}] {label} ({seconds:.1f} s; about "
                 f"{_fmt_seconds(eta.seconds_left())} left)")

    def _activity_rows(self, collector: activity.ActivityCollector) -> list[dict[str, Any]]:
        domains = sorted({key[0] for (_, key) in collector.stats} - {""})
        rule = activity.active_rule_of(self.layout)
        tau = None if self.layout.relu_family else self.settings.activity_threshold
        out = []
        for layer in self.layout.layers:
            for domain in ["", *domains]:
                stats = collector.layer_stats(layer.index, (lambda k: True) if domain == "" else
                                              (lambda k, d=domain: k[0] == d))
                out.append(activity.activity_row(stats, layer=layer.index, domain=domain, activity_threshold=tau,
                                                 active_rule=rule, activation=self.layout.activation))
        return out

    def _component_rows(self, base_total: float, refs: dict[tuple[str, int], components.Reference], eta: Eta,
                        counter: list[int]) -> list[dict[str, Any]]:
        s = self.settings
        out = []
        chosen = [g for g in self.groups if g.layer == components.ALL_LAYERS or s.per_layer]
        for g in chosen:
            ref = refs[g.key]
            out.append(rows.component_row(
                component=g.component, layer=g.layer, bits=rows.REFERENCE_BITS, n_params=g.n_params,
                n_quantized_params=0, param_bits=ref.bits, param_bits_reference=ref.bits, reference_code=ref.code,
                data_bits=base_total, base_data_bits=base_total, packed_bytes=None, side_bytes=None,
                wall_seconds=0.0, detail=f"as stored ({ref.code})"))
        if not s.bits:
            return out
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mdlbench-zstd") as zstd:
            for g in chosen:
                ref = refs[g.key]
                for k in s.bits:
                    t0 = time.perf_counter()
                    qg = quantize.quantize_group(self.model, g, k, s.group_size)
                    pending = zstd.submit(qg.code, s.zstd_level)  # zstd-19 on the second core while we score
                    t_score = time.perf_counter()
                    if g.n_quantized:
                        with quantize.replaced_parameters(self.model, qg.restored):
                            data = fsum_bits(list(self._rescore(None).values()))
                        eta.done(eta.estimate(None), time.perf_counter() - t_score)
                    else:
                        data = base_total  # nothing is rounded (1-D tensors are kept exactly): the same model
                    code = pending.result()
                    seconds = time.perf_counter() - t0
                    self.timer.add("component codes", seconds)
                    row = rows.component_row(
                        component=g.component, layer=g.layer, bits=k, n_params=g.n_params,
                        n_quantized_params=g.n_quantized, param_bits=code.model_bits, param_bits_reference=ref.bits,
                        reference_code=ref.code, data_bits=data, base_data_bits=base_total,
                        packed_bytes=code.packed_bytes, side_bytes=code.side_bytes, wall_seconds=seconds,
                        detail=rtn_detail(code, s.group_size, s.zstd_level))
                    out.append(row)
                    where = "" if g.layer == components.ALL_LAYERS else f" layer {g.layer}"
                    label = (f"{g.component}{where} at {k} bits: parameters {ref.bits / 1e6:.3f} -> "
                             f"{code.model_bits / 1e6:.3f} Mbit, data {row['delta_data_bits']:+,.1f} bits, net "
                             f"{row['net_bits_saved']:+,.0f} bits")
                    if g.n_quantized:
                        self._announce(counter, label, seconds, eta)
                    else:
                        self.log(f"[lens] {label} (kept exactly: no re-scoring)")
        return out

    def _mixed(self, comp_rows: list[dict[str, Any]], base_total: float, eta: Eta,
               counter: list[int]) -> list[dict[str, Any]]:
        s = self.settings
        t0 = time.perf_counter()
        choices, n_combinations = rows.choose_mixed(comp_rows)
        by_component = {g.component: g for g in self.groups if g.layer == components.ALL_LAYERS}
        changed = [c for c in choices if c.bits != rows.REFERENCE_BITS and by_component[c.component].n_quantized]
        if len(changed) <= 1:
            # The model is bit for bit the unmodified one or one of the component rows: its data bits are known.
            data = base_total + (changed[0].delta_data_bits if changed else 0.0)
            how = "no re-scoring needed (at most one component rounded: the data bits of its row)"
            counter[1] -= 1
        else:
            restored: dict[str, Any] = {}
            for c in changed:
                restored.update(quantize.quantize_group(self.model, by_component[c.component], c.bits,
                                                        s.group_size).restored)
            with quantize.replaced_parameters(self.model, restored):
                data = fsum_bits(list(self._rescore(None).values()))
            eta.done(eta.estimate(None), time.perf_counter() - t0)
            how = "re-scored"
        model_bits = rows.mixed_model_bits(choices, n_combinations)
        tokenizer_bits = tokenizer_code(self.loaded.tokenizer).model_bits
        code = TwoPartCode("quantized-mixed", model_bits, tokenizer_bits, data,
                           rows.describe_mixed(choices, n_combinations))
        n_bytes = sum(d.n_bytes for d in self.corpus.documents())
        n_params = sum(g.n_params for g in self.groups if g.layer == components.ALL_LAYERS)
        seconds = time.perf_counter() - t0
        self.timer.add("mixed-precision code", seconds)
        label = (f"quantized-mixed: {model_bits / 1e6:.3f} Mbit + data {data - base_total:+,.1f} bits ({how})")
        if how == "re-scored":
            self._announce(counter, label, seconds, eta)
        else:
            self.log(f"[lens] {label}")
        return [two_part_row(code, n_bytes=n_bytes, n_params=n_params)] if n_bytes > 0 else []

    def _pruning_rows(self, collector: activity.ActivityCollector, base_total: float, eta: Eta,
                      counter: list[int]) -> list[dict[str, Any]]:
        widths = components.ffn_tensor_widths(self.model, self.layout, self.loaded.gguf_file)
        per_neuron = {layer.index: pruning.params_per_neuron(layer) for layer in self.layout.layers}
        bits_per_neuron = {layer.index: pruning.neuron_storage_bits(layer, widths) for layer in self.layout.layers}
        out = []
        for criterion, fraction, scope in self.plan.prune_variants:
            t0 = time.perf_counter()
            layers = [layer.index for layer in self.layout.layers] if scope == components.ALL_LAYERS else [scope]
            removed = {i: pruning.n_to_remove(fraction, self.layout.layers[i].d_ff) for i in layers}
            fold_bits = []
            for fold in (0, 1):
                if not any(removed.values()):
                    fold_bits.append(fsum_bits([b for _, b in self._base_bits_by_fold(fold)]))
                    continue
                t_fold = time.perf_counter()
                keep = pruning_keep(collector, criterion, fraction, layers, rank_fold=1 - fold,
                                    seed=self.settings.seed)
                with pruning.pruned(self.layout, keep):
                    fold_bits.append(fsum_bits(list(self._rescore(fold).values())))
                eta.done(eta.estimate(fold), time.perf_counter() - t_fold)
            params_removed = sum(removed[i] * per_neuron[i] for i in layers)
            bits_saved = math.fsum(removed[i] * bits_per_neuron[i] for i in layers)
            seconds = time.perf_counter() - t0
            self.timer.add("pruning", seconds)
            row = rows.pruning_row(
                criterion=criterion, fraction=fraction, layer=scope,
                seed=self.settings.seed if criterion == "random" else None,
                neurons_removed=sum(removed.values()), params_removed=params_removed, param_bits_saved=bits_saved,
                fold_bits=fold_bits, fold_docs=self.fold_docs, base_data_bits=base_total, wall_seconds=seconds)
            out.append(row)
            where = "every layer" if scope == components.ALL_LAYERS else f"layer {scope}"
            self._announce(counter, f"prune {fraction:g} of {where} by {criterion}: parameters "
                                    f"-{bits_saved / 1e6:.3f} Mbit, held-out data {row['delta_data_bits']:+,.1f} bits, "
                                    f"net {row['net_bits_saved']:+,.0f} bits", seconds, eta)
        return out

    def _base_bits_by_fold(self, fold: int) -> Iterator[tuple[int, float]]:
        for i, doc in enumerate(self.corpus.documents()):
            if self.folds[doc.doc_id] == fold:
                yield i, self._base_bits[i]

    # -- tables ------------------------------------------------------------------------------------------------
    def _commit(self, result: LensResult) -> None:
        run_id = result.run_id
        names = {"model": str(self.run_plan.row["model"]), "corpus": self.corpus.name}

        def named(table: str, table_rows: Sequence[dict[str, Any]]) -> Any:
            return tables.to_arrow(table, [{**names, **r} for r in table_rows])

        parts: dict[tuple[str, str], Any] = {(t, run_id): named(t, r) for t, r in (
            ("component_codes", result.component_rows), ("ffn_activity", result.activity_rows),
            ("ffn_pruning", result.pruning_rows))}
        if result.two_part_rows:
            parts.update({key: named(key[0], r) for key, r in self._two_part_rows(run_id,
                                                                                 result.two_part_rows).items()})
        tables.commit(self.out_dir, parts)

    def _two_part_rows(self, run_id: str, mixed: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
        """The run's two_part rows with quantized-mixed replaced or added (and the cheap default codes when the
        run has none yet), plus two_part_vs_baseline for every row against the corpus's verified baselines."""
        existing = tables.read_partition(self.out_dir, "two_part", run_id)
        existing = existing[existing["param_code"] != "quantized-mixed"]
        if len(existing):
            kept = existing.drop(columns=["run_id", *(name for name, _ in RUN_NAMES)]).to_dict("records")
        else:
            n_params = int(mixed[0]["n_params"])
            kept = two_part_rows(self.model, self.loaded.tokenizer, data_bits=self._base_total,
                                 n_bytes=int(mixed[0]["n_bytes"]), codes=requested_codes(None, n_params),
                                 gguf_path=self.loaded.gguf_file)
        all_rows = [*kept, *mixed]
        sha = tables.read_partition(self.out_dir, "runs", run_id)["corpus_sha256"]
        refs = []
        if (self.out_dir / "baselines").is_dir() and len(sha):
            b = tables.read_table(self.out_dir, "baselines")
            b = b[(b["corpus_sha256"] == sha.iloc[0]) & b["roundtrip_verified"].fillna(False).astype(bool)]
            refs = [Baseline(str(r.compressor), str(r.mode), float(r.bits_per_byte)) for r in b.itertuples()]
        refs.append(Baseline(UNIFORM_BYTES, "per_document", float(BITS_PER_BYTE)))
        return {("two_part", run_id): all_rows, ("two_part_vs_baseline", run_id): vs_baseline_rows(all_rows, refs)}
