"""Strict integers from untrusted input: query parameters (text) and JSON fields (numbers).

Python's `int()` and DRF's IntegerField are generous: " 1", "+5", "1_000", "١" (Arabic-Indic
one), 1.0, "1" and True all become integers, and nothing stops a cursor past 64 bits reaching
PostgreSQL's bigint. Here a query integer is ASCII digits only ([0-9]+, no sign, space,
underscore or exponent) and a JSON integer is a JSON integer (not a bool, float or string), both
within 0..2**63-1 unless narrowed. Errors are VALIDATION_ERROR keyed by the field's name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rest_framework import serializers

from chatsite.api.errors import ApiError

MAX_INT64 = 2**63 - 1
_DIGITS = re.compile(r"[0-9]+")


def _check_int(value: str, minimum: int, maximum: int) -> tuple[int | None, str]:
    if not isinstance(value, str) or not _DIGITS.fullmatch(value):
        return None, "Must be an integer written with the digits 0-9 only."
    # Length first: more digits than the bound has is out of range without building the int.
    stripped = value.lstrip("0") or "0"
    if len(stripped) > len(str(maximum)) or not minimum <= (number := int(stripped)) <= maximum:
        return None, f"Must be between {minimum} and {maximum}."
    return number, ""


def parse_int(value: str, *, field: str, minimum: int = 0, maximum: int = MAX_INT64) -> int:
    """A query parameter's text as an integer in minimum..maximum, or VALIDATION_ERROR under
    `field`."""
    number, problem = _check_int(value, minimum, maximum)
    if number is None:
        raise ApiError("VALIDATION_ERROR", errors={field: [problem]})
    return number


@dataclass(frozen=True)
class IntParam:
    default: int
    minimum: int = 0
    maximum: int = MAX_INT64


def parse_int_params(params: Mapping[str, Any], **fields: IntParam) -> dict[str, int]:
    """Several integer query parameters, each checked on its own: one VALIDATION_ERROR lists every
    bad one under its own name. An absent parameter takes its default."""
    values: dict[str, int] = {}
    errors: dict[str, list[str]] = {}
    for name, spec in fields.items():
        raw = params.get(name)
        if raw is None:
            values[name] = spec.default
            continue
        number, problem = _check_int(raw, spec.minimum, spec.maximum)
        if number is None:
            errors[name] = [problem]
        else:
            values[name] = number
    if errors:
        raise ApiError("VALIDATION_ERROR", errors=errors)
    return values


def is_json_int(value: Any, minimum: int = 0, maximum: int = MAX_INT64) -> bool:
    """A JSON integer (not bool, float or string) in minimum..maximum: for hand-written parsers."""
    return type(value) is int and minimum <= value <= maximum


class StrictIntegerField(serializers.IntegerField):
    """IntegerField for JSON bodies and frames: only a JSON integer (0.0, true and "0" are
    refused), bounded to a signed 64-bit value unless max_value narrows it."""

    default_error_messages = {"invalid": "A JSON integer is required."}

    def __init__(self, **kwargs):
        kwargs.setdefault("max_value", MAX_INT64)
        if kwargs.get("min_value") is None:
            kwargs["min_value"] = -MAX_INT64 - 1
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if type(data) is not int:
            self.fail("invalid")
        return data
