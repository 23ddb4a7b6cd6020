"""The REST body parser: DRF's JSONParser over the one untrusted-JSON parser (json_input.loads).

DRF's own parser hands the body to `json.load`, which raises RecursionError on input nested about
1,000 deep: a 500 on every endpoint. This one answers 400 VALIDATION_ERROR past JSON_MAX_DEPTH.
"""

from __future__ import annotations

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError

from chatsite.api import json_input


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        # ApiError (too deep) propagates to the exception handler as VALIDATION_ERROR.
        try:
            return json_input.loads(stream.read().decode(encoding))
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, NaN / Infinity
            raise ParseError(f"JSON parse error - {exc}") from exc
