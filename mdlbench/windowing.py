"""PURE window planning: which tokens each forward pass reads and which predictions it owns.

A document is coded as a stream ``s`` of N tokens. Position 0 is never predicted by the model: under the
``bos`` policy it is the BOS/prefix token (context only, costs 0 bits because the decoder knows it); under the
``uniform`` policy it is the first real token, charged log2|V| outside the model. The model predicts targets
1..N-1. Index them by the input position that predicts them, u = t - 1, so there are M = N - 1 predictions.

A window ``(input_start, score_start, input_end)`` feeds ``s[input_start:input_end]`` (at most W tokens) and keeps
the predictions made at input positions ``u in [score_start, input_end)``, i.e. the targets ``s[u + 1]``.
Each prediction has ``u - input_start + 1`` tokens of context.

    >>> plan_windows(10, window=4, stride=2)
    [Window(input_start=0, score_start=0, input_end=4), Window(input_start=2, score_start=4, input_end=6), \
Window(input_start=4, score_start=6, input_end=8), Window(input_start=6, score_start=8, input_end=10)]

Invariants (tested property-based): every u in [0, M) is owned by exactly one window; every window reads at
most W tokens; after the first window every prediction has at least W - S + 1 tokens of context. With S = W the
prediction windows are disjoint and each carries one token of context — exactly lm-evaluation-harness's
``loglikelihood_rolling`` (``get_rolling_token_windows`` with ``context_len=1``; the last window is left-filled).
"""

from __future__ import annotations

from typing import NamedTuple


class Window(NamedTuple):
    input_start: int
    score_start: int
    input_end: int

    @property
    def n_input(self) -> int:
        return self.input_end - self.input_start

    @property
    def n_scored(self) -> int:
        return self.input_end - self.score_start


def plan_windows(n_predictions: int, window: int, stride: int) -> list[Window]:
    """Windows over M = n_predictions input positions; see the module docstring. M = 0 gives no windows."""
    if not 1 <= stride <= window:
        raise ValueError(f"need 1 <= stride <= window, got stride={stride}, window={window}")
    if n_predictions <= 0:
        return []
    if n_predictions <= window:
        return [Window(0, 0, n_predictions)]
    windows = [Window(0, 0, window)]
    done = window
    while done < n_predictions:
        end = min(done + stride, n_predictions)
        windows.append(Window(end - window, done, end))
        done = end
    return windows


def n_forward_tokens(n_predictions: int, window: int, stride: int) -> int:
    """Tokens the model reads for one document: the cost of the plan (for ETAs and throughput)."""
    return sum(w.n_input for w in plan_windows(n_predictions, window, stride))
