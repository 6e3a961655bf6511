"""The supervisor dashboard: statistics kept cheap, and the live stream of them."""
