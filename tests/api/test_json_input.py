"""The one untrusted-JSON parser shared by REST bodies and /ws frames."""

from __future__ import annotations

import pytest

from chatsite.api import json_input
from chatsite.api.errors import ApiError


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_nesting_at_the_limit_parses(settings):
    settings.JSON_MAX_DEPTH = 5
    assert json_input.loads(nested(5)) == [[[[[]]]]]


def test_nesting_past_the_limit_is_a_validation_error(settings):
    settings.JSON_MAX_DEPTH = 5
    with pytest.raises(ApiError) as err:
        json_input.loads(nested(6))
    assert err.value.code == "VALIDATION_ERROR"


def test_nesting_that_would_overflow_the_interpreter_is_a_validation_error():
    with pytest.raises(ApiError) as err:
        json_input.loads('{"type":"ping","ref":' + nested(3000) + "}")
    assert err.value.code == "VALIDATION_ERROR"


def test_brackets_inside_strings_do_not_count_as_nesting(settings):
    settings.JSON_MAX_DEPTH = 2
    text = '{"a": "' + "[" * 50 + '\\"' + "{" * 50 + '"}'
    assert json_input.loads(text)["a"].startswith("[[")


def test_a_depth_limit_above_what_the_interpreter_allows_still_answers_400(settings):
    settings.JSON_MAX_DEPTH = 10**6
    with pytest.raises(ApiError) as err:
        json_input.loads(nested(200_000))
    assert err.value.code == "VALIDATION_ERROR"


def test_bytes_are_decoded_as_utf8():
    assert json_input.loads('{"name": "élan"}'.encode()) == {"name": "élan"}


def test_text_that_is_not_json_raises_value_error():
    with pytest.raises(ValueError):
        json_input.loads("{not json")
