"""The Django admin for dm, as support staff use it: devices and key bundles (public keys only;
revocation through the same service as the API), one-time prekeys (key ids only), messages,
conversations, per-device deliveries and queues for delivery tracing. No ciphertext is ever
shown."""

from dm.admin import conversations, devices, messages, prekeys  # noqa: F401  (each module registers its models)
