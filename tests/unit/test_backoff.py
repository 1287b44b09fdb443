import pytest
from hypothesis import given
from hypothesis import strategies as st

from support_pipeline.processing.backoff import backoff_ceiling, visibility_timeout


@pytest.mark.parametrize(
    ("receive_count", "expected"),
    [(1, 10), (2, 20), (3, 40), (4, 80), (7, 640), (8, 900), (30, 900), (0, 10)],
)
def test_ceiling_is_min_cap_base_times_two_to_the_n_minus_one(receive_count, expected):
    assert backoff_ceiling(receive_count, base=10, cap=900) == expected


def test_jitter_spans_half_to_full_ceiling():
    assert visibility_timeout(3, 10, 900, rng=lambda: 0.0) == 20
    assert visibility_timeout(3, 10, 900, rng=lambda: 1.0) == 40


def test_never_beyond_sqs_maximum_visibility():
    assert backoff_ceiling(60, base=10_000, cap=10**9) == 43200


@given(n=st.integers(min_value=1, max_value=40), r1=st.floats(0, 1), r2=st.floats(0, 1))
def test_delays_never_shrink_from_one_attempt_to_the_next(n, r1, r2):
    assert visibility_timeout(n, 10, 900, lambda: r1) <= visibility_timeout(
        n + 1, 10, 900, lambda: r2
    ) or (backoff_ceiling(n, 10, 900) == 900)
