"""mdlbench: code lengths of text under causal language models, in bits, written to Parquet."""

__version__ = "0.1.0"

# Bumped whenever a change to the scoring code could change a number; part of every run id.
SCORING_CODE_VERSION = "1"
