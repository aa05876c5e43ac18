"""`mdlbench run`: models × corpora -> code lengths -> Parquet. Linear, no arithmetic of its own.

Each (model, corpus) pair is one run, identified by its content address (run/plan.py). The order of work:
1. every corpus spec and model spec is resolved and hashed (no model is loaded), and the options are checked;
2. for each pair, a finished run whose extras are all present is reused without loading anything;
3. otherwise the model is loaded (once per spec), the run's chunks are scored (run/chunks.py) and assembled
   (run/assemble.py), and the missing extras are added (run/extras.py); baselines run in a second process.
A failing run is reported and the others go on.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from mdlbench import tables
from mdlbench.config import UNIFORM_BYTES, CorpusEntry, ModelEntry, RunOptions
from mdlbench.corpora import Corpus, open_corpus, split_name
from mdlbench.errors import InputError, MdlbenchError
from mdlbench.fsio import check_out_dir, file_lock
from mdlbench.mdl.two_part import check_codes, requested_codes
from mdlbench.progress import Log, Progress
from mdlbench.run import extras
from mdlbench.run.assemble import finalize_run, now_utc, read_summary
from mdlbench.run.background import BaselineRunner, baseline_names
from mdlbench.run.chunks import score_chunks
from mdlbench.run.distributed import DistContext
from mdlbench.run.plan import PlannedRun, plan_model_run, plan_uniform_run, run_id
from mdlbench.run.state import SINGLE, RunState, Shard, is_busy
from mdlbench.scoring.identity import ModelIdentity, identify_model, probe_device_type
from mdlbench.scoring.models import LoadedModel

Status = Literal["done", "reused", "shard-done", "failed"]


@dataclass
class RunOutcome:
    run_id: str
    model: str
    corpus: str
    status: Status
    summary: dict[str, Any]
    message: str = ""
    exit_code: int = 0
    corpus_sha256: str = ""
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def reused(self) -> bool:
        return self.status == "reused"


class ModelSlot:
    """One model spec of a job: identified up front, loaded the first time a run needs it, then kept."""

    def __init__(self, entry: ModelEntry, options: RunOptions) -> None:
        self.spec = entry.spec
        self.options = options
        self.identity: ModelIdentity | None = None
        self._name = entry.name
        if entry.spec != UNIFORM_BYTES:
            self.identity = identify_model(entry.spec, revision=options.model_revision,
                                           boundary_token=options.boundary_token)
            if entry.name:
                self.identity = replace(self.identity, name=entry.name)
        self._loaded: LoadedModel | None = None

    @property
    def name(self) -> str:
        return self.identity.name if self.identity is not None else (self._name or UNIFORM_BYTES)

    def load(self, log: Log) -> LoadedModel:
        from mdlbench.scoring.models import load_identified

        if self._loaded is None:
            assert self.identity is not None
            if self.options.progress != "none":
                log(f"loading model {self.spec!r} ...")
            self._loaded = load_identified(self.identity, dtype=self.options.dtype, device=self.options.device,
                                           trust_remote_code=self.options.trust_remote_code)
        return self._loaded

    def plan(self, corpus: Corpus, log: Log) -> PlannedRun:
        if self.identity is None:
            return plan_uniform_run(corpus, self.options, name=self.name)
        return plan_model_run(self.load(log), corpus, self.options)

    def release(self) -> None:
        self._loaded = None  # one model in memory at a time


def as_model_entry(spec: str | ModelEntry) -> ModelEntry:
    """A model of a job: ``NAME=SPEC`` or a spec (its name from its files)."""
    if isinstance(spec, ModelEntry):
        return spec
    name, rest = split_name(spec)
    return ModelEntry(rest, name)


def open_entry(spec: str | CorpusEntry, options: RunOptions) -> Corpus:
    """A corpus of a job (``NAME=SPEC``, a spec, or a CorpusEntry with its own reading options) opened under the
    run's options."""
    if isinstance(spec, CorpusEntry):
        entry = spec
    else:
        name, rest = split_name(spec)
        entry = CorpusEntry(rest, name)
    return open_corpus(entry.spec, name=entry.name, text_field=entry.text_field or options.text_field,
                       id_field=entry.id_field if entry.id_field is not None else options.id_field,
                       revision=entry.revision or options.corpus_revision, max_docs=options.max_docs,
                       max_bytes=options.max_bytes, errors=options.errors,
                       data_files=entry.data_files or options.data_files, domain=entry.domain or "")


def _runs_row(out_dir: Path, rid: str) -> dict[str, Any]:
    """The run's own row, read from its own partition (a damaged partition of another run cannot hide it)."""
    row = tables.read_partition(out_dir, "runs", rid)
    return row.iloc[0].to_dict() if len(row) else {}


def _missing_extras(out_dir: Path, rid: str, row: dict[str, Any], options: RunOptions, leader_extras: bool) -> bool:
    """Whether a finished run still lacks per-token rows, a two-part code, coding rows or the lens's tables (which
    need its scorer)."""
    if not leader_extras:
        return False
    if extras.tokens_missing(out_dir, rid, options.per_token):
        return True
    if row.get("model_format") == "builtin":
        return False
    codes = requested_codes(options.two_part, int(row.get("n_params") or 0))
    return bool(extras.missing_two_part(out_dir, rid, codes, str(row.get("model_format")))) or \
        extras.coding_missing(out_dir, rid, options.verify_coding) or extras.lens_missing(out_dir, rid, options.lens)


def _drop_leftovers(state: RunState, log: Log) -> None:
    """A run found complete owns no progress folder any more (one left by a kill just after its commit)."""
    if state.dir.exists() and not is_busy(state):
        log(f"run {state.run_id}: removing the progress folder its commit left behind")
        state.remove()


def score_run(plan: PlannedRun, label: str, corpus: Corpus, options: RunOptions, out_dir: Path, shard: Shard,
           dist: DistContext, log: Log) -> RunOutcome:
    """Score this shard's chunks of a planned run, then assemble the run if all shards are done."""
    state = RunState(out_dir, plan.run_id)
    model = str(plan.row["model"])
    meta = {"identity": plan.identity, "chunk_docs": options.checkpoint_docs, "batch_size": plan.row["batch_size"],
            "run_row": plan.row, "corpus": corpus.name, "corpus_source": corpus.source, "errors": options.errors,
            "bootstrap_samples": options.bootstrap_samples, "seed": options.seed, "per_token": options.per_token,
            "started_at": now_utc()}
    lock = file_lock(state.shard_lock_path(shard), on_wait=lambda: log(
        f"run {plan.run_id} ({label}) shard {shard} is being written by another process; waiting for it to finish"))
    with contextlib.ExitStack() as held:
        held.enter_context(lock)
        if state.is_complete() and not options.force:
            log(f"run {plan.run_id} ({label}) was completed by another process; skipping")
            held.close()  # the shard lock first: the progress folder the assembler left for us can then go
            state.clear_unless_scored()
            return RunOutcome(plan.run_id, model, corpus.name, "reused", read_summary(out_dir, plan.run_id))
        if options.force and dist.is_leader and shard.count == 1:
            state.clear()
        dist.barrier()
        fresh = not state.dir.exists()
        state.ensure(meta)
        stats = corpus.scan() if not corpus.streamed else None
        progress = Progress(label + (f" [shard {shard}]" if shard.count > 1 else ""),
                            total_docs=stats.n_docs if stats else None,
                            total_bytes=stats.n_bytes if stats else corpus.size_hint_bytes, mode=options.progress)
        try:
            n_docs, corpus_sha = score_chunks(plan.scorer, model, corpus, state, shard,
                                              chunk_docs=options.checkpoint_docs, per_token=options.per_token,
                                              progress=progress)
        except MdlbenchError:
            # A record that turned out bad late in a stream (or a model that failed): the run cannot finish as
            # it is, so what this invocation began is removed; a run resumed from earlier chunks keeps them.
            if fresh:
                state.remove()
            raise
        if n_docs == 0:
            if fresh:
                state.remove()
            raise InputError(f"{corpus.source}: no documents{corpus.selection_note()}; give a corpus with at least "
                             "one document")
        progress.close()
        state.mark_shard(shard, n_docs, corpus_sha)
        own_lock = state.shard_lock_path(shard) if shard.count == 1 else None
        if own_lock is None:
            held.close()  # each shard's process may assemble: the lock guards this shard's scoring only
        # A whole run keeps its shard lock while it assembles: a `--force` rerun waiting for the lock would
        # otherwise clear the progress folder between this process's scoring and its assembly.
        return _assemble(plan, label, corpus.name, options, out_dir, shard, dist, log, state, own_lock)


def _assemble(plan: PlannedRun, label: str, corpus_name: str, options: RunOptions, out_dir: Path, shard: Shard,
              dist: DistContext, log: Log, state: RunState, own_lock: Path | None) -> RunOutcome:
    """The leader assembles the run once every shard is done (score_run's second half)."""
    model = str(plan.row["model"])
    dist.barrier()
    outcome: RunOutcome
    if dist.is_leader:
        missing = state.missing_shards(shard.count)
        if missing:
            msg = (f"shard {shard} of run {plan.run_id} ({label}) is done; shards {missing} of {shard.count} are "
                   f"not — run them, then `mdlbench merge {out_dir}`")
            log(msg)
            outcome = RunOutcome(plan.run_id, model, corpus_name, "shard-done", {}, msg)
        else:
            with file_lock(state.final_lock_path()):
                # Another process assembled it while we looked (with --force, only if it took our progress too).
                if state.is_complete() and (not options.force or not state.dir.exists()):
                    summary = read_summary(out_dir, plan.run_id)
                    state.clear_unless_scored(own_lock)
                else:
                    summary = finalize_run(out_dir, plan.run_id, log=log, own_lock=own_lock)
            outcome = RunOutcome(plan.run_id, model, corpus_name, "done", summary)
    else:
        outcome = RunOutcome(plan.run_id, model, corpus_name, "shard-done", {})
    dist.barrier()
    return outcome


def _add_extras(plan: PlannedRun, outcome: RunOutcome, corpus: Corpus, options: RunOptions, out_dir: Path,
                baselines: BaselineRunner, log: Log) -> None:
    """Per-token, two-part, real-coding and lens tables for a finished run: only what is missing (or all, with
    --force)."""
    if extras.tokens_missing(out_dir, plan.run_id, options.per_token):
        log(f"per-token rows for {outcome.model} × {corpus.name} ...")
        tables.commit(out_dir, extras.tokens_partition(plan, corpus, options.checkpoint_docs))
    if plan.loaded is None:
        return
    codes = requested_codes(options.two_part, int(plan.row["n_params"] or 0))
    todo = codes if options.force else extras.missing_two_part(out_dir, plan.run_id, codes, plan.loaded.format)
    if todo:
        log(f"two-part codes for {outcome.model} × {corpus.name}: {', '.join(todo)} ...")
        refs = baselines.result(corpus, outcome.corpus_sha256)
        tables.commit(out_dir, extras.two_part_partitions(plan, corpus, outcome.summary, todo, refs,
                                                          options.checkpoint_docs, out_dir))
    if options.verify_coding and (options.force or extras.coding_missing(out_dir, plan.run_id,
                                                                         options.verify_coding)):
        log(f"real coding of {options.verify_coding} document(s) of {corpus.name} with {outcome.model} ...")
        tables.commit(out_dir, extras.coding_partition(plan, corpus, options.verify_coding))
    if options.lens and (options.force or extras.lens_missing(out_dir, plan.run_id, True)):
        from mdlbench.lens.driver import Lens, LensSettings

        log(f"lens of {outcome.model} × {corpus.name} (default settings) ...")
        # The run is complete (just computed, or reused): the lens adds its own passes beside it.
        Lens(plan.loaded, corpus, plan, replace(options, force=False), LensSettings(), out_dir, log).run()


@dataclass
class Pair:
    """One (model, corpus) run of the job, and what a look at the results folder found for it."""

    slot: ModelSlot
    corpus: Corpus
    reused: RunOutcome | None = None  # finished, with every extra: nothing to load or write

    @property
    def label(self) -> str:
        return f"{self.slot.name} × {self.corpus.name}"


def _reusable(pair: Pair, options: RunOptions, out_dir: Path, leader_extras: bool) -> RunOutcome | None:
    """The outcome of a finished run that lacks nothing, recognised from files alone (no torch, no weights)."""
    if options.force:
        return None
    rid = run_id(pair.slot.identity, pair.corpus, options, probe_device_type(options.device))
    if not RunState(out_dir, rid).is_complete():
        return None
    row = _runs_row(out_dir, rid)
    if _missing_extras(out_dir, rid, row, options, leader_extras):
        return None
    return RunOutcome(rid, pair.slot.name, pair.corpus.name, "reused", read_summary(out_dir, rid),
                      corpus_sha256=str(row["corpus_sha256"]))


def _one_run(pair: Pair, options: RunOptions, out_dir: Path, shard: Shard, dist: DistContext,
             baselines: BaselineRunner, leader_extras: bool, log: Log) -> RunOutcome:
    if pair.reused is not None:
        log(f"run {pair.reused.run_id} ({pair.label}) is already complete in {out_dir}; skipping (--force "
            "recomputes)")
        _drop_leftovers(RunState(out_dir, pair.reused.run_id), log)
        if leader_extras:
            baselines.start(pair.corpus, corpus_sha256=pair.reused.corpus_sha256)
        return pair.reused
    plan = pair.slot.plan(pair.corpus, log)
    if leader_extras:
        _check_extras(plan, pair.corpus, options)
        # Baselines start once a run on the corpus is known to be valid: bad input writes nothing.
        baselines.start(pair.corpus)
    state = RunState(out_dir, plan.run_id)
    if state.is_complete() and not options.force:
        log(f"run {plan.run_id} ({pair.label}) is already complete in {out_dir}; adding what it lacks")
        _drop_leftovers(state, log)
        outcome = RunOutcome(plan.run_id, pair.slot.name, pair.corpus.name, "reused",
                             read_summary(out_dir, plan.run_id))
    else:
        outcome = score_run(plan, pair.label, pair.corpus, options, out_dir, shard, dist, log)
    if outcome.status in ("done", "reused"):
        outcome.corpus_sha256 = str(_runs_row(out_dir, plan.run_id).get("corpus_sha256", ""))
        if leader_extras:
            try:
                _add_extras(plan, outcome, pair.corpus, options, out_dir, baselines, log)
            except MdlbenchError as exc:
                # Found only after the run (a streamed corpus): the run's own tables are committed and stay; the
                # outcome carries the error and its exit code, and a rerun adds only what is missing.
                outcome.message = f"{exc} (the run's tables are committed; a rerun adds only the missing extras)"
                outcome.exit_code = exc.exit_code
                log(f"error: {pair.label}: {outcome.message}")
    return outcome


def _check_extras(plan: PlannedRun, corpus: Corpus, options: RunOptions) -> None:
    """What the run's extras would refuse, checked before the run writes anything: the coding settings of
    ``--verify-coding`` and, on a corpus read in advance, what ``--lens`` needs."""
    if plan.loaded is None:
        return
    if options.verify_coding:
        from mdlbench.coding.identity import resolve_settings

        resolve_settings(plan.loaded, **extras.coding_options(plan))
    if options.lens and not corpus.streamed:
        from mdlbench.lens.driver import LensSettings, lens_inputs

        lens_inputs(plan.loaded.model, corpus, LensSettings())


def run_benchmark(model_specs: Sequence[str | ModelEntry], corpus_specs: Sequence[str | CorpusEntry],
                  options: RunOptions, out_dir: Path,
                  *, log: Log | None = None, dist: DistContext | None = None) -> list[RunOutcome]:
    """Every corpus under every model, one run per pair, plus the extras. A failing run is reported and the
    others go on.

    Validate, then write: every spec is resolved, every model identified, the results folder checked, and every
    local corpus that a run still needs is read in full (decoding, fields, ids, the selection) before the first
    file is written, so bad input leaves the results folder as it was. Streamed (hf:) corpora cannot be read in
    advance; a bad record found late removes what its run wrote.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    dist = dist or DistContext()
    out_dir = Path(out_dir)
    if dist.enabled and options.shard:
        raise InputError("--shard and torchrun both split the work; use one of them")
    shard = dist.shard if dist.enabled else (Shard.parse(options.shard) if options.shard else SINGLE)
    check_out_dir(out_dir)
    corpora = [open_entry(s, options) for s in corpus_specs]
    slots = [ModelSlot(as_model_entry(spec), options) for spec in model_specs]
    # Prequential settings are checked now, so that a bad one fails before anything is scored or written.
    prequential = _prequential_inputs(options) if options.prequential else None
    leader_extras = dist.is_leader and shard.count == 1
    names = baseline_names(options.baselines) if leader_extras else []
    check_codes(options.two_part)
    pairs = [Pair(slot, corpus) for slot in slots for corpus in corpora]
    for pair in pairs:
        pair.reused = _reusable(pair, options, out_dir, leader_extras)
    needed = {id(p.corpus): p.corpus for p in pairs if p.reused is None}
    if prequential is not None:
        needed.update({id(c): c for c in corpora})
    for corpus in needed.values():
        if not corpus.streamed:
            corpus.scan()
    baselines = BaselineRunner(out_dir, names)
    if dist.is_leader:
        tables.recover(out_dir)
    outcomes: list[RunOutcome] = []
    try:
        for i, pair in enumerate(pairs):
            try:
                outcomes.append(_one_run(pair, options, out_dir, shard, dist, baselines, leader_extras, log))
            except MdlbenchError as exc:
                if len(pairs) == 1:
                    raise
                log(f"error: run {pair.label} failed: {exc}")
                outcomes.append(RunOutcome("", pair.slot.name, pair.corpus.name, "failed", {}, str(exc),
                                           exc.exit_code))
            if i + 1 == len(pairs) or pairs[i + 1].slot is not pair.slot:
                pair.slot.release()
        if leader_extras:
            _attach_comparisons(outcomes, corpora, options, out_dir, baselines, prequential, log)
    except BaseException:
        baselines.terminate()  # an interrupt or error: the child's work is lost anyway, do not wait for it
        raise
    finally:
        baselines.close()
    return outcomes


PrequentialInputs = tuple[Any, tuple[int, ...], dict[str, Any] | None, Any]  # (tokenizer, seeds, arch, grid)


def _prequential_inputs(options: RunOptions) -> PrequentialInputs:
    """(tokenizer, seeds, architecture, architecture grid) of ``--prequential``, loaded and validated."""
    from mdlbench.prequential.driver import load_arch, parse_seeds
    from mdlbench.prequential.vocab import load_tokenizer

    seeds = parse_seeds(options.prequential_seeds)
    arch = load_arch(options.prequential_arch) if options.prequential_arch is not None else None
    grid = None
    if options.prequential_arch_grid is not None:
        from mdlbench.lens.grid import load_grid

        if arch is not None:
            raise InputError("prequential_arch and prequential_arch_grid both set the architecture; keep one")
        grid = load_grid(options.prequential_arch_grid)
    return load_tokenizer(options.prequential_tokenizer), seeds, arch, grid


def _attach_comparisons(outcomes: list[RunOutcome], corpora: Sequence[Corpus],
                        options: RunOptions, out_dir: Path, baselines: BaselineRunner,
                        prequential: PrequentialInputs | None, log: Log) -> None:
    """Best baselines, two-part rows and prequential results next to each run, for the console summary."""
    from mdlbench.baselines.run import best_verified

    by_corpus = {c.name: c for c in corpora}
    for o in outcomes:
        if o.status not in ("done", "reused") or o.corpus not in by_corpus:
            continue
        refs = baselines.result(by_corpus[o.corpus], o.corpus_sha256)
        for key, mode in (("best_per_document", "per_document"), ("best_concatenated", "concatenated")):
            best = best_verified(refs, mode)
            o.extras[key] = None if best is None else (str(best["compressor"]), float(best["bits_per_byte"]))
        if tables.partition_exists(out_dir, "two_part", o.run_id):
            o.extras["two_part"] = tables.read_partition(out_dir, "two_part", o.run_id)
    if prequential is not None:
        from mdlbench.prequential.driver import run_prequential_for_corpus

        tokenizer, seeds, arch, grid = prequential
        preq_log = log if options.progress in ("auto", "bar") else None
        for corpus in corpora:
            progress = Progress("prequential", mode="json") if options.progress == "json" else None
            if grid is not None:
                from mdlbench.lens.grid import run_grid

                cells = run_grid(corpus, grid, tokenizer=tokenizer, seeds=seeds, out_dir=out_dir, force=options.force,
                                 log=preq_log, progress=progress)
                aggregate = [{**a, "estimator": f"{a['estimator']}, n_layer {c.n_layer}, ffn_ratio {c.ffn_ratio:g}, "
                                                f"d_model {c.d_model}"} for c, r in cells for a in r.aggregate]
            else:
                aggregate = run_prequential_for_corpus(corpus, arch=arch, tokenizer=tokenizer, seeds=seeds,
                                                       out_dir=out_dir, force=options.force, log=preq_log,
                                                       progress=progress).aggregate
            for o in outcomes:
                if o.corpus == corpus.name and o.status in ("done", "reused"):
                    o.extras["prequential"] = aggregate
