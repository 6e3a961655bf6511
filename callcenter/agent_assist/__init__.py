"""Agent assist: the agent's desk and the assist knowledge behind it.

* ``desk/``: the agent's side of a call, live: the websocket hub
  (``GET /ws/agent``: offers, accept and reject, state pushes, presence) and
  the wrap-up (whose call it is, notes and the answer, stored once).
* ``knowledge/``: what the service knows to help the agent: learning
  questions, treatment rules, the condition language they share, the bank
  (file, tables, cache, checks, REST API) and the assist panel built from it.
* ``protocol.py``: the socket's messages, the contract between the two, the
  agent page and the README.

The desk uses the knowledge; the knowledge never imports the desk.
"""
