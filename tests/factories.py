"""factory_boy factories shared by every test module.

The dm factories go through the services the API calls (`device_register`, `conversation_open`,
`message_send`), so a test gets rows that passed every rule, without the HTTP round trip. Device
keys are real: a few vodozemac accounts are made once per test session and copied from a pickle
for each device, so every `OlmDevice` can still open and decrypt Olm sessions.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import factory
import vodozemac

from chatsite.accounts import services as account_services
from chatsite.accounts.models import User
from dm.models import Conversation, Device, Message
from dm.selectors.devices import active_devices
from dm.services import devices as device_services
from dm.services import messages as message_services
from groups.models import Group
from tests.dm.olm_client import OlmDevice, new_client_message_id

DEFAULT_PASSWORD = "correct horse battery staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", DEFAULT_PASSWORD)

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):  # noqa: N805
        if create:
            obj.save()


# --- E2EE keys, made once per test session ----------------------------------------------------

KEY_SETS = 10  # E2EE_MAX_DEVICES_PER_USER's default: enough for any one user's devices
MAX_ONE_TIME_PREKEYS = 20
_PICKLE_KEY = bytes(32)  # test accounts only


@dataclass(frozen=True)
class DeviceKeys:
    """One vodozemac account's published keys, and the account pickled after publishing them."""

    account_pickle: str
    identity_key: str
    signing_key: str
    signed_prekey: dict[str, str]
    fallback_key: dict[str, str]
    one_time_prekeys: tuple[dict[str, str], ...]

    def olm_device(self, name: str = "test phone") -> OlmDevice:
        """The client side of these keys: a fresh copy of the account, private keys included."""
        return OlmDevice(name, account=vodozemac.Account.from_pickle(self.account_pickle, _PICKLE_KEY))


def _new_keys() -> DeviceKeys:
    olm = OlmDevice()
    body = olm.registration(n_prekeys=MAX_ONE_TIME_PREKEYS)
    return DeviceKeys(
        account_pickle=olm.account.pickle(_PICKLE_KEY),
        identity_key=body["identity_key"],
        signing_key=body["signing_key"],
        signed_prekey=body["signed_prekey"],
        fallback_key=body["fallback_key"],
        one_time_prekeys=tuple(body["one_time_prekeys"]),
    )


@functools.cache
def _key_sets() -> tuple[DeviceKeys, ...]:
    return tuple(_new_keys() for _ in range(KEY_SETS))


_turn = itertools.count()


def device_keys(user: User) -> DeviceKeys:
    """Keys for a new device of `user`: an identity the user never had, as a real new device has
    (so identity-change events happen as they would), cached unless the user used them all. The
    sets are tried from a rotating start, so two users seldom share one."""
    used = set(Device.objects.filter(user=user).values_list("identity_key", flat=True))
    sets = _key_sets()
    start = next(_turn)
    rotated = (sets[(start + i) % len(sets)] for i in range(len(sets)))
    return next((keys for keys in rotated if keys.identity_key not in used), None) or _new_keys()


# --- dm ---------------------------------------------------------------------------------------


def _new_session(user: User):
    session, _token = account_services.session_login(username=user.username, password=DEFAULT_PASSWORD)
    return session


class DeviceFactory(factory.Factory):
    """An active device registered by `device_register` and bound to `session` (by default a new
    session of `user`). Build its client side with `keys.olm_device()` when the test needs one."""

    class Meta:
        model = Device

    user = factory.SubFactory(UserFactory)
    session = factory.LazyAttribute(lambda o: _new_session(o.user))
    keys = factory.LazyAttribute(lambda o: device_keys(o.user))
    name = "test phone"
    one_time_prekeys = 5
    fallback = True

    @classmethod
    def _create(cls, model_class, *, user, session, keys, name, one_time_prekeys, fallback):
        if one_time_prekeys > MAX_ONE_TIME_PREKEYS:
            raise ValueError(f"at most {MAX_ONE_TIME_PREKEYS} cached one-time prekeys per device")
        if session.user_id != user.pk:
            raise ValueError("the session must be one of `user`'s")
        return device_services.device_register(
            session=session,
            name=name,
            identity_key=keys.identity_key,
            signing_key=keys.signing_key,
            signed_prekey=dict(keys.signed_prekey),
            one_time_prekeys=[dict(k) for k in keys.one_time_prekeys[:one_time_prekeys]],
            fallback_key=dict(keys.fallback_key) if fallback else None,
        )


class ConversationFactory(factory.Factory):
    """The conversation between `user` and `other`, opened by `conversation_open` as `user`."""

    class Meta:
        model = Conversation

    user = factory.SubFactory(UserFactory)
    other = factory.SubFactory(UserFactory)

    @classmethod
    def _create(cls, model_class, *, user, other):
        conversation, _created = message_services.conversation_open(user=user, other_user_id=other.pk)
        return conversation


class MessageFactory(factory.Factory):
    """A message sent by `message_send` from `sender_device`, with one opaque envelope for every
    other active device of both members (what a client encrypts for; the server never reads it)."""

    class Meta:
        model = Message

    sender_device = factory.SubFactory(DeviceFactory)
    # Unless given: with a new user who has one device (a message needs a device to go to).
    conversation = factory.LazyAttribute(
        lambda o: ConversationFactory(user=o.sender_device.user, other=DeviceFactory().user)
    )
    client_message_id = factory.LazyFunction(new_client_message_id)
    ciphertext = "b3BhcXVl"

    @classmethod
    def _create(cls, model_class, *, sender_device, conversation, client_message_id, ciphertext):
        members = (conversation.user_low_id, conversation.user_high_id)
        recipients = [d for uid in members for d in active_devices(uid) if d != sender_device.pk]
        result = message_services.message_send(
            sender_id=sender_device.user_id,
            sender_device_id=sender_device.pk,
            conversation_id=conversation.pk,
            client_message_id=client_message_id,
            envelopes=[message_services.Envelope(str(d), ciphertext, 1) for d in recipients],
        )
        return result.message


# --- groups -----------------------------------------------------------------------------------


class GroupFactory(factory.Factory):
    """A group made by `group_create`: `owner` (a new user unless given) is its owner and only
    member. Add members with `group_add_members`."""

    class Meta:
        model = Group

    owner = factory.SubFactory(UserFactory)
    title = factory.Sequence(lambda n: f"group {n}")

    @classmethod
    def _create(cls, model_class, *, owner, title):
        from groups.services.members import group_create

        return group_create(user_id=owner.pk, title=title)


def group_add_members(group, *users, role: str = "member") -> list:
    """Admit `users` to `group` through `_admit` (the capacity-checked admission every add, join
    and invite uses), each in its own transaction; returns their participations."""
    from django.db import transaction

    from groups.services.members import _admit

    members = []
    for user in users:
        with transaction.atomic():
            members.append(_admit(group_id=group.pk, user_id=user.pk, role=role))
    return members
