"""Telephony adapters: each peer's wire format in, its commands out, one queue in the middle."""
