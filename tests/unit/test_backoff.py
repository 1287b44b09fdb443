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


@given(n=st.integers(min_value=1, max_value=40), r=st.floats(0, 1))
def test_the_delay_range_never_shrinks_and_jitter_stays_inside_it(n, r):
    assert backoff_ceiling(n, 10, 900) <= backoff_ceiling(n + 1, 10, 900)
    ceiling = backoff_ceiling(n, 10, 900)
    assert ceiling / 2 - 0.5 <= visibility_timeout(n, 10, 900, lambda: r) <= ceiling


def test_a_scale_shortens_every_delay_alike():
    assert visibility_timeout(3, 10, 900, rng=lambda: 1.0, scale=0.1) == 4
    assert visibility_timeout(8, 10, 900, rng=lambda: 0.0, scale=0.5) == 225
    assert visibility_timeout(1, 10, 900, rng=lambda: 0.0, scale=0.01) == 0


def test_the_scale_comes_from_an_env_var_only_the_local_stack_sets():
    from support_pipeline.config import BACKOFF_SCALE_ENV, ConfigError, backoff_scale
    from tests.support import ROOT

    assert backoff_scale({}) == 1.0
    assert backoff_scale({BACKOFF_SCALE_ENV: "0.1"}) == 0.1
    for bad in ("0", "2", "fast"):
        with pytest.raises(ConfigError, match=BACKOFF_SCALE_ENV):
            backoff_scale({BACKOFF_SCALE_ENV: bad})
    assert BACKOFF_SCALE_ENV not in (ROOT / "template.yaml").read_text(encoding="utf-8")
