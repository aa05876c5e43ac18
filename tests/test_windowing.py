"""Window plans: exact coverage (property-based), context guarantees, and lm-evaluation-harness parity."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mdlbench.windowing import Window, n_forward_tokens, plan_windows


@st.composite
def plans(draw):
    window = draw(st.integers(1, 40))
    stride = draw(st.integers(1, window))
    n = draw(st.integers(0, 300))
    return n, window, stride


@given(plans())
def test_every_prediction_owned_exactly_once(case):
    n, window, stride = case
    owned = [u for w in plan_windows(n, window, stride) for u in range(w.score_start, w.input_end)]
    assert sorted(owned) == list(range(n))
    assert len(owned) == len(set(owned))


@given(plans())
def test_windows_fit_and_give_guaranteed_context(case):
    n, window, stride = case
    plan = plan_windows(n, window, stride)
    for i, w in enumerate(plan):
        assert 0 <= w.input_start <= w.score_start < w.input_end <= n
        assert w.n_input <= window
        if i > 0:
            # the first scored prediction of a later window sees at least window - stride + 1 tokens
            assert w.score_start - w.input_start + 1 >= window - stride + 1
    assert n_forward_tokens(n, window, stride) == sum(w.n_input for w in plan)


def test_hand_worked_plan():
    assert plan_windows(10, 4, 2) == [Window(0, 0, 4), Window(2, 4, 6), Window(4, 6, 8), Window(6, 8, 10)]
    assert plan_windows(3, 8, 4) == [Window(0, 0, 3)]  # fits: one full-context pass
    assert plan_windows(0, 8, 4) == []


def _lm_eval_rolling(tokens: list[int], prefix: int, max_len: int) -> list[tuple[list[int], list[int]]]:
    """lm-evaluation-harness's rolling windows with context_len=1, re-derived from its documented behaviour:
    first window [prefix] + tokens[:L-1] predicting tokens[:L]; then disjoint prediction windows of L tokens,
    each fed the L tokens before its last target (the last one left-filled)."""
    out = []
    first = min(max_len, len(tokens))
    out.append(([prefix, *tokens[: first - 1]], tokens[:first]))
    predicted = first
    while predicted < len(tokens):
        end = min(predicted + max_len, len(tokens))
        inputs = ([prefix, *tokens])[max(0, end - max_len):end]
        out.append((inputs, tokens[predicted:end]))
        predicted = end
    return out


@pytest.mark.parametrize("n,max_len", [(1, 4), (4, 4), (5, 4), (9, 4), (23, 5), (100, 7)])
def test_stride_equal_window_is_lm_eval_rolling(n, max_len):
    tokens = list(range(100, 100 + n))
    stream = [0, *tokens]  # prefix token 0, as under first_token="bos"
    ours = [(stream[w.input_start:w.input_end], stream[w.score_start + 1:w.input_end + 1])
            for w in plan_windows(len(stream) - 1, max_len, max_len)]
    assert ours == _lm_eval_rolling(tokens, 0, max_len)


def test_rejects_bad_stride():
    with pytest.raises(ValueError):
        plan_windows(10, 4, 5)
    with pytest.raises(ValueError):
        plan_windows(10, 4, 0)
