"""Username alphabet and password policy additions.

Usernames are limited to ASCII `[a-z0-9_.-]` so two names that look alike on screen are the same
bytes: there are no confusables (Cyrillic `а` for Latin `a`, `ä` beside `a`) to tell apart.
Lengths come from USERNAME_MIN_LENGTH / USERNAME_MAX_LENGTH, read when a name is validated.
"""

from __future__ import annotations

import re
import unicodedata

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.deconstruct import deconstructible

_USERNAME_ALPHABET = re.compile(r"[a-z0-9_.-]+\Z")


@deconstructible
class UsernameValidator:
    """A normalised username: lower-case ASCII letters, digits, `_`, `.`, `-`, within the limits."""

    code = "invalid"

    def __call__(self, value: str) -> None:
        lo, hi = settings.USERNAME_MIN_LENGTH, settings.USERNAME_MAX_LENGTH
        if not (lo <= len(value) <= hi) or not _USERNAME_ALPHABET.match(value):
            raise ValidationError(
                f"Use {lo}-{hi} characters: letters a-z, digits, '_', '.' or '-'.",
                code=self.code,
                params={"value": value},
            )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UsernameValidator)

    def __hash__(self) -> int:
        return hash(type(self))


# Whitespace, separators, controls, format characters (zero-width space, BOM) and combining marks
# are typed or pasted without being seen; they do not count as password characters.
_INVISIBLE_CATEGORIES = {"Zs", "Zl", "Zp", "Cc", "Cf", "Mn", "Me"}


def _visible_length(password: str) -> int:
    return sum(
        1 for ch in password if not ch.isspace() and unicodedata.category(ch) not in _INVISIBLE_CATEGORIES
    )


class VisibleCharactersValidator:
    """AUTH_PASSWORD_VALIDATORS entry: at least `min_length` visible characters.

    Django's MinimumLengthValidator counts eight spaces as eight characters; this one does not, so
    whitespace-only and mostly-blank passwords are refused. Spaces inside a passphrase are fine.
    """

    def __init__(self, min_length: int = 8) -> None:
        self.min_length = min_length

    def validate(self, password: str, user=None) -> None:
        if _visible_length(password) < self.min_length:
            raise ValidationError(
                f"This password needs at least {self.min_length} characters other than spaces.",
                code="password_too_blank",
                params={"min_length": self.min_length},
            )

    def get_help_text(self) -> str:
        return f"Your password must contain at least {self.min_length} characters other than spaces."
