"""Input and output shapes of dm: `devices` (devices, keys, bundles) and `messages`
(conversations, sends, fetches, acks). Shape only: the rules are in dm/services."""
