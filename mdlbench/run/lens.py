"""`mdlbench lens`: the FFN lens on one model and one corpus, attached to the run of that pair.

The run is planned as `mdlbench run` plans it (same content address); when it is not complete yet, the lens's base
pass is the run itself (scored inside the activity hooks and committed), so the lens's tables always sit beside a
finished run whose bits they extend.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mdlbench import tables
from mdlbench.config import UNIFORM_BYTES, CorpusEntry, ModelEntry, RunOptions
from mdlbench.corpora import Corpus
from mdlbench.errors import InputError
from mdlbench.fsio import check_out_dir
from mdlbench.lens.driver import Lens, LensResult, LensSettings
from mdlbench.lens.layout import ffn_layout
from mdlbench.progress import Log
from mdlbench.run.distributed import DistContext
from mdlbench.run.execute import ModelSlot, as_model_entry, open_entry, score_run
from mdlbench.run.state import SINGLE


def run_lens(model_spec: str | ModelEntry, corpus_spec: str | CorpusEntry, options: RunOptions,
             settings: LensSettings, out_dir: Path, *, log: Log) -> LensResult:
    """Validate (the model's type, the results folder, the whole corpus), load the model once, run the lens, and
    commit its tables; nothing is written when any input is bad."""
    entry = as_model_entry(model_spec)
    if entry.spec == UNIFORM_BYTES:
        raise InputError("the lens needs a transformer with parameters; uniform-bytes has none")
    check_out_dir(Path(out_dir))
    corpus = open_entry(corpus_spec, options)
    if not corpus.streamed:
        corpus.scan()
    return lens_for(ModelSlot(entry, options), corpus, options, settings, Path(out_dir), log=log)


def lens_for(slot: ModelSlot, corpus: Corpus, options: RunOptions, settings: LensSettings, out_dir: Path, *,
             log: Log) -> LensResult:
    """The lens of an identified model (loaded here, once) on an opened corpus."""
    loaded = slot.load(log)
    ffn_layout(loaded.model)  # an unsupported model type: one line, before anything is planned or written
    plan = slot.plan(corpus, log)
    label = f"{slot.name} × {corpus.name}"
    tables.recover(out_dir)

    def compute_run() -> None:
        score_run(plan, label, corpus, replace(options, force=True), out_dir, SINGLE, DistContext(), log)

    return Lens(loaded, corpus, plan, options, settings, out_dir, log, compute_run=compute_run).run()
