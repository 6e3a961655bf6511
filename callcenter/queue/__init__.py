"""The hold queue: who is served next (policy), where calls wait (PostgreSQL), who gets them."""
