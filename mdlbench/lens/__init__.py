"""The FFN lens: what each part of a model costs in bits, and what it buys (``mdlbench lens``; README "Model anatomy").

Modules, one concern each: ``layout`` (where each architecture's FFN lives), ``components`` (parameters by component
and layer, and their code as stored), ``quantize`` (one component at k bits), ``activity`` (FFN activity hooks),
``pruning`` (removing neurons for real), ``rows`` (the tables' formulas), ``driver`` (the passes), ``grid`` (width
against depth under a prequential code); the command is ``cli/lens.py`` and ``run/lens.py``. Importing this package
imports neither torch nor transformers.
"""
