from pathlib import Path

from django.conf import settings

from chatsite.api.management.commands.errors_doc import render


def test_docs_errors_md_matches_the_registry():
    on_disk = (Path(settings.BASE_DIR) / "docs" / "errors.md").read_text()
    assert on_disk == render(), "run `python manage.py errors_doc` and commit docs/errors.md"
