"""``decimal_text`` takes ``str`` where it is the positional text: the same
text as ``format(value, "f")`` for every finite value, ``null`` otherwise."""

from __future__ import annotations

import decimal
from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from asyncpager.convert import decimal_text


def reference(value: Decimal) -> str:
    return format(value, "f") if value.is_finite() else "null"


@settings(max_examples=500, deadline=None)
@given(
    st.decimals(allow_nan=True, allow_infinity=True)
    | st.builds(
        lambda sign, digits, exponent: Decimal(f"{sign}{digits}E{exponent}"),
        st.sampled_from(["", "-", "+"]),
        st.text("0123456789", min_size=1, max_size=40),
        st.integers(-140, 130),
    )
)
@example(Decimal("-0"))
@example(Decimal("0E-7"))
@example(Decimal("0E+3"))
@example(Decimal("NaN123"))
@example(Decimal("-sNaN"))
def test_same_text_as_format(value: Decimal) -> None:
    assert decimal_text(value) == reference(value)


@pytest.mark.parametrize("text", ["1E+2", "1E-9", "12.50", "NaN", "-Infinity"])
def test_lower_case_exponents_of_the_context_change_nothing(text: str) -> None:
    with decimal.localcontext() as context:
        context.capitals = 0
        assert decimal_text(Decimal(text)) == reference(Decimal(text))
