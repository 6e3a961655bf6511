"""The agent's desk: the websocket hub (offers, accept, reject, presence) and the wrap-up."""
