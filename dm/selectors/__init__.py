"""Reads for dm, one module per area: devices and keys, messages and delivery."""
