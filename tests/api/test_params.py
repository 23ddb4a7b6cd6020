"""Strict integers for query parameters and JSON fields (chatsite.api.params)."""

from __future__ import annotations

import pytest
from rest_framework import serializers

from chatsite.api.errors import ApiError
from chatsite.api.params import MAX_INT64, IntParam, StrictIntegerField, parse_int, parse_int_params

LOOSE_TEXT = ["-1", " 1", "1 ", "1\n", "١", "1_000", "+5", "1e3", "1.0", "0x10", "", str(MAX_INT64 + 1)]


@pytest.mark.parametrize("text", LOOSE_TEXT)
def test_parse_int_refuses_anything_but_ascii_digits_within_int64(text):
    with pytest.raises(ApiError) as err:
        parse_int(text, field="since")
    assert err.value.code == "VALIDATION_ERROR"
    assert list(err.value.extra["errors"]) == ["since"]


def test_parse_int_accepts_ascii_digits_up_to_the_int64_maximum():
    assert parse_int("0", field="since") == 0
    assert parse_int("007", field="since") == 7
    assert parse_int(str(MAX_INT64), field="since") == MAX_INT64


def test_parse_int_applies_the_given_bounds():
    assert parse_int("5", field="limit", minimum=1, maximum=5) == 5
    for text in ("0", "6"):
        with pytest.raises(ApiError) as err:
            parse_int(text, field="limit", minimum=1, maximum=5)
        assert list(err.value.extra["errors"]) == ["limit"]


def test_a_huge_digit_string_is_out_of_range_not_a_crash():
    # Past sys.get_int_max_str_digits() int() itself would raise ValueError.
    with pytest.raises(ApiError) as err:
        parse_int("9" * 100_000, field="cursor")
    assert list(err.value.extra["errors"]) == ["cursor"]


def test_parse_int_params_reports_each_bad_parameter_under_its_own_name():
    spec = {"since": IntParam(default=0), "limit": IntParam(default=10, minimum=1, maximum=10)}
    assert parse_int_params({}, **spec) == {"since": 0, "limit": 10}
    assert parse_int_params({"since": "3", "limit": "2"}, **spec) == {"since": 3, "limit": 2}
    with pytest.raises(ApiError) as err:
        parse_int_params({"since": "-1"}, **spec)
    assert list(err.value.extra["errors"]) == ["since"]
    with pytest.raises(ApiError) as err:
        parse_int_params({"limit": "1e3"}, **spec)
    assert list(err.value.extra["errors"]) == ["limit"]
    with pytest.raises(ApiError) as err:
        parse_int_params({"since": "+5", "limit": "0"}, **spec)
    assert sorted(err.value.extra["errors"]) == ["limit", "since"]


class _Body(serializers.Serializer):
    n = StrictIntegerField(min_value=0)


@pytest.mark.parametrize("value", [0.0, 1.0, True, False, "0", "1", None, [1], MAX_INT64 + 1, -1])
def test_strict_integer_field_refuses_non_integers_and_out_of_range(value):
    body = _Body(data={"n": value})
    assert not body.is_valid()
    assert list(body.errors) == ["n"]


@pytest.mark.parametrize("value", [0, 1, MAX_INT64])
def test_strict_integer_field_accepts_json_integers(value):
    body = _Body(data={"n": value})
    assert body.is_valid(), body.errors
    assert body.validated_data["n"] == value
