"""Status test helpers: users with contacts and blocks, and posts through the API."""

from __future__ import annotations

from chatsite.accounts.models import Block, Contact
from tests.conftest import client_for
from tests.factories import UserFactory

CT = "c3RhdHVzIGNpcGhlcnRleHQ"  # opaque base64


class Person:
    def __init__(self):
        self.user = UserFactory()
        self.pk = self.user.pk
        self._client = None

    @property
    def client(self):
        if self._client is None:
            self._client = client_for(self.user)
        return self._client


def people(n: int) -> list[Person]:
    return [Person() for _ in range(n)]


def add_contacts(owner: Person, *others: Person) -> None:
    for other in others:
        Contact.objects.get_or_create(owner=owner.user, contact=other.user)


def block(blocker: Person, blocked: Person) -> None:
    Block.objects.create(blocker=blocker.user, blocked=blocked.user)


def post(owner: Person, mode: str = "contacts", audience=(), **content):
    body = {"audience_mode": mode, "audience": [p.pk for p in audience]}
    body.update(content or {"ciphertext": CT})
    return owner.client.post("/status/posts", body, format="json")


def post_id(owner: Person, mode: str = "contacts", audience=(), **content) -> str:
    resp = post(owner, mode, audience, **content)
    assert resp.status_code == 201, resp.content
    return resp.json()["id"]
