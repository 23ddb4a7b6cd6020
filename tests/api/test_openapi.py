from io import StringIO

from django.core.management import call_command


def test_openapi_schema_generates_and_validates_without_warnings(tmp_path):
    out = tmp_path / "schema.yml"
    call_command("spectacular", "--file", str(out), "--validate", "--fail-on-warn", stderr=StringIO())
    schema = out.read_text()
    for path in ("/auth/login:", "/e2ee/bundles/{user_id}:", "/dm/conversations/{conversation_id}/messages:"):
        assert path in schema
    assert "bearerAuth" in schema
