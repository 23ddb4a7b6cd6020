"""The Django admin for dm, as support staff use it: devices and key bundles (public keys only;
revocation through the same service as the API) and messages with delivery tracing. No
ciphertext is ever shown."""

from dm.admin import devices, messages  # noqa: F401  (each module registers its models)
