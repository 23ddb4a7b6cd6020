"""Close codes live in one enum; docs/realtime.md's table is generated from it."""

from __future__ import annotations

from chatsite.realtime.close_codes import CloseCode
from chatsite.realtime.management.commands.realtime_doc import path, rendered_doc


def test_docs_realtime_md_close_code_table_matches_the_enum():
    on_disk = path().read_text()
    assert on_disk == rendered_doc(on_disk), "run `python manage.py realtime_doc` and commit docs/realtime.md"


def test_every_close_code_is_a_valid_websocket_application_or_protocol_code():
    for code in CloseCode:
        assert code in (1009, 1011) or 4000 <= code <= 4999, code
        assert code.meaning.endswith("."), code
