"""mdlbench: code lengths of text under causal language models, in bits, written to Parquet.

The layout follows the flow of a run: corpora -> scoring -> code lengths -> tables -> reports.

    config.py        options (RunOptions, validated on construction), literals, shared constants, the strict loader
    errors.py        errors a user can fix, and the exit codes
    codelength.py    PURE: units, sum-then-divide rates, the document bootstrap
    windowing.py     PURE: which tokens each forward pass reads and which predictions it owns
    tables.py        the one schema registry (every table), atomic commits, reads
    export.py        every table of a results folder as one CSV or JSON Lines file (`mdlbench export`)
    fsio.py          atomic writes and advisory locks;  digests.py  file sha256s, cached by file identity
    progress.py      the one progress reporter (bar, plain lines or JSON on stderr)
    corpora/         corpus specs -> streamed Documents (readers, manifests, catalog.py: what `-c NAME` can mean)
    scoring/         identity.py (a model from its files, no torch), models.py (loading), hf.py (the only module
                     that runs a model for code lengths), uniform.py, tokens.py (byte spans), base.py (Scorer)
    mdl/             parameter accounting (params.py), weight codes (weights_code.py), two-part codes (two_part.py)
    run/             a run: plan.py (content addresses), chunks.py (crash-safe chunked scoring), assemble.py,
                     state.py (progress folders, shards), distributed.py (torchrun), extras.py, background.py
                     (baselines in a second process), jobs.py (job files), execute.py (models × corpora), lens.py
                     (`mdlbench lens`: the lens attached to the run it extends)
    lens/            the FFN lens: layout.py (FFN tensors per architecture), components.py, activity.py (hooks on
                     the scoring passes), pruning.py, quantize.py, rows.py (PURE formulas), grid.py (width/depth
                     grid of prequential runs), driver.py
    baselines/       classical compressors on the same bytes (compressors.py registry, run.py measurement)
    prequential/     prequential MDL: schedule.py (PURE), estimators.py, vocab.py, results.py, driver.py
    coding/          real range coding: plan.py (PURE lockstep batch plan), lockstep.py (batched rows, one range
                     coder per document), identity.py (what a file records, the checks), container.py (.mdlz),
                     archive.py (chunks, resume, extraction), coder.py (one file; `--verify-coding`),
                     commands.py (`compress`/`decompress`)
    report/          Markdown/HTML reports and figures, from the tables alone
    cli/             one module per subcommand (imported only when it runs), shared argument groups, formatting
"""

__version__ = "0.1.0"

# Bumped whenever a change to the scoring code could change a number; part of every run id.
SCORING_CODE_VERSION = "2"  # 2: GGUF tokenizers split text as their authors' do (scoring/gguf_tokenizer.py)
