"""Ordered schema migrations: ``NNNN_name.sql`` files applied by ``callcenter.db.migrate``."""
