"""Security events written before 0002 kept the username a failed log-in typed, verbatim, in
`data.username`: a password typed into the username field stayed in the database and the admin.
Replace it with what log-in failures record now (a keyed hash and the length), so old and new
rows correlate the same way and no typed text is kept."""

import hashlib
import hmac
import unicodedata

from django.conf import settings
from django.db import migrations


def _digest(typed: str) -> str:
    # chatsite.accounts.login_throttle.username_digest over chatsite.accounts.models'
    # normalisation, copied here because a migration must not change with the code.
    normalised = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", typed).casefold())
    mac = hmac.new(settings.SECRET_KEY.encode(), b"login-username:" + normalised.encode(), hashlib.sha256)
    return mac.hexdigest()[:16]


def forget_typed_usernames(apps, schema_editor):
    SecurityEvent = apps.get_model("accounts", "SecurityEvent")
    for event in SecurityEvent.objects.filter(data__has_key="username").iterator():
        data = dict(event.data)
        typed = str(data.pop("username"))
        if event.user_id is None:
            data.setdefault("username_hmac", _digest(typed))
            data.setdefault("username_length", len(typed))
        event.data = data
        event.save(update_fields=["data"])


class Migration(migrations.Migration):
    dependencies = [("accounts", "0002_username_normalised_login_delayed")]

    operations = [migrations.RunPython(forget_typed_usernames, migrations.RunPython.noop)]
