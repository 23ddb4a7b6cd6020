"""Every response a test client gets is checked against the OpenAPI schema the server publishes.

tests/conftest.py wraps Django's `Client.request` and `AsyncClient.request` (DRF's APIClient is a
Client) so that each response to a documented path must have a documented method and status, a
documented content type, a body that validates against the documented JSON schema, and the
documented required headers. Responses to undocumented paths, or to undocumented methods of
documented ones, may only be the 404 NOT_FOUND / 405 METHOD_NOT_ALLOWED envelopes. Not checked:
/admin/ and /static/ (HTML and files), /schema/ (the schema itself), streaming bodies (status and
content type only), requests made while a test swaps ROOT_URLCONF (the schema describes ours),
and requests that never reach the API: for a host not in ALLOWED_HOSTS (only the 400 BAD_REQUEST
envelope) or over plain HTTP redirected to https:// (301).

The schema is drf-spectacular's (`SchemaGenerator().get_schema(public=True)`, as /schema/ serves
it), generated once per run. It is OpenAPI 3.0: `nullable` is turned into JSON Schema's null type
and the bodies are checked with jsonschema (Draft 7, with format checks such as uuid).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jsonschema
from django.conf import settings
from django.http.request import split_domain_port, validate_host

NOT_CHECKED = ("/admin/", "/static/", "/schema/")
_ERROR_REF = "#/components/schemas/ApiError"


class SchemaMismatch(AssertionError):
    pass


def _json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema objects as JSON Schema: `nullable: true` allows null."""
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _json_schema(value) for key, value in node.items()}
    if out.pop("nullable", False):
        return {"anyOf": [out, {"type": "null"}]}
    return out


@dataclass(frozen=True)
class _Route:
    template: str
    regex: re.Pattern[str]


class OpenApiChecker:
    def __init__(self, schema: dict[str, Any], *, urlconf: str):
        self.schema = schema
        self.urlconf = urlconf
        self.components = _json_schema(schema.get("components", {}))
        # Literal paths before templated ones, so /e2ee/devices wins over /e2ee/devices/{device_id}.
        self.routes = sorted(
            (
                _Route(
                    template, re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$")
                )
                for template in schema["paths"]
            ),
            key=lambda route: (route.template.count("{"), route.template),
        )

    # The response of a Django test client: `response.request` is the WSGI environ it was given
    # (PATH_INFO, REQUEST_METHOD) or, from AsyncClient, the ASGI scope (path, method).
    def check_response(self, response: Any) -> None:
        if settings.ROOT_URLCONF != self.urlconf:
            return
        request = getattr(response, "request", None) or {}
        path = request.get("PATH_INFO") or request.get("path") or ""
        method = (request.get("REQUEST_METHOD") or request.get("method") or "GET").upper()
        if any(path.startswith(prefix) for prefix in NOT_CHECKED):
            return
        self.check(
            method=method,
            path=path,
            host=_host(request),
            status=response.status_code,
            content_type=response.get("Content-Type", ""),
            body=None if response.streaming else response.content,
            headers=response,
        )

    def check(
        self,
        *,
        method: str,
        path: str,
        status: int,
        content_type: str,
        body: bytes | None,
        headers: Any,
        host: str = "testserver",
    ) -> None:
        where = f"{method} {path} -> {status}"
        # Requests that never reach the API, whatever the path: for another host (400), or over
        # plain HTTP when SECURE_SSL_REDIRECT sends them to https:// (301).
        domain, _port = split_domain_port(host)
        if status == 400 and not validate_host(domain, settings.ALLOWED_HOSTS):
            self._check_plain_error(
                where, "BAD_REQUEST", status, content_type, body, f"a request for host {host!r}"
            )
            return
        if (
            status == 301
            and settings.SECURE_SSL_REDIRECT
            and headers.get("Location", "").startswith("https://")
        ):
            return
        route = next((r for r in self.routes if r.regex.match(path)), None)
        if route is None:
            self._check_plain_error(where, "NOT_FOUND", status, content_type, body, "an undocumented path")
            return
        operations = self.schema["paths"][route.template]
        operation = operations.get("get" if method == "HEAD" else method.lower())
        if operation is None:
            self._check_plain_error(
                where,
                "METHOD_NOT_ALLOWED",
                status,
                content_type,
                body,
                f"a method {route.template} does not document",
            )
            return
        responses = operation["responses"]
        documented = responses.get(str(status))
        if documented is None:
            raise SchemaMismatch(
                f"OpenAPI: {where}: status {status} is not documented for {method} {route.template} "
                f"(documented: {', '.join(responses)}). Body: {_excerpt(body)}"
            )
        for name, header in documented.get("headers", {}).items():
            if header.get("required") and name not in headers:
                raise SchemaMismatch(f"OpenAPI: {where}: required header {name} is missing")
        content = documented.get("content")
        if not content:
            if body:
                raise SchemaMismatch(f"OpenAPI: {where}: documented without a body, got {_excerpt(body)}")
            return
        media_type = content_type.split(";")[0].strip().lower()
        if media_type not in content:
            raise SchemaMismatch(
                f"OpenAPI: {where}: content type {content_type!r} is not documented "
                f"(documented: {', '.join(content)})"
            )
        if body is None or method == "HEAD" or media_type != "application/json":
            return
        schema = content[media_type].get("schema")
        if schema is not None:
            self._validate(where, schema, body)

    def _check_plain_error(
        self, where: str, code: str, status: int, content_type: str, body: bytes | None, what: str
    ) -> None:
        problem = f"OpenAPI: {where}: {what} may only answer the {code} envelope"
        if not content_type.startswith("application/json") or body is None:
            raise SchemaMismatch(f"{problem}, got {content_type!r}")
        self._validate(where, {"$ref": _ERROR_REF}, body, problem=problem)
        if json.loads(body).get("code") != code:
            raise SchemaMismatch(f"{problem}, got {_excerpt(body)}")

    def _validate(self, where: str, schema: dict[str, Any], body: bytes, *, problem: str = "") -> None:
        try:
            data = json.loads(body)
        except ValueError:
            raise SchemaMismatch(f"OpenAPI: {where}: the body is not JSON: {_excerpt(body)}") from None
        error = jsonschema.exceptions.best_match(self._validator(json.dumps(schema)).iter_errors(data))
        if error is not None:
            location = "/".join(str(part) for part in error.absolute_path) or "(body)"
            raise SchemaMismatch(
                f"{problem or f'OpenAPI: {where}: the body does not match the schema'}: at {location}: "
                f"{error.message}. Body: {_excerpt(body)}"
            )

    @functools.cache  # noqa: B019 (one checker per test run)
    def _validator(self, schema_json: str) -> jsonschema.Draft7Validator:
        # `$ref: #/components/...` resolves against the document root: carry the components there.
        root = {**_json_schema(json.loads(schema_json)), "components": self.components}
        return jsonschema.Draft7Validator(root, format_checker=_FORMATS)


_FORMATS = jsonschema.FormatChecker()  # every format jsonschema knows (uuid included), and:


@_FORMATS.checks("date-time", raises=ValueError)
def _is_datetime(value: object) -> bool:
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return "T" in value.upper() and parsed.tzinfo is not None
    return True


def _host(request: dict[str, Any]) -> str:
    if "HTTP_HOST" in request:
        return request["HTTP_HOST"]
    for name, value in request.get("headers") or ():  # ASGI
        if name.lower() == b"host":
            return value.decode("latin-1")
    return request.get("SERVER_NAME") or "testserver"


def _excerpt(body: bytes | None) -> str:
    if body is None:
        return "(streaming)"
    text = body[:400].decode("utf-8", "replace")
    return text + ("..." if len(body) > 400 else "")


def checker() -> OpenApiChecker:
    """The project's schema, as /schema/ serves it (call once per run, before a test swaps urls)."""
    from drf_spectacular.generators import SchemaGenerator

    return OpenApiChecker(
        SchemaGenerator().get_schema(request=None, public=True), urlconf=settings.ROOT_URLCONF
    )
