"""Telephony peers: inbound events into the queue, outbound connect and hang-up commands."""
