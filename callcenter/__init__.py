"""callcenter: a contact-center backend that treats different callers differently."""

__version__ = "0.1.0"
