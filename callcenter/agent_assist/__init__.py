"""Agent assist: the agent websocket hub and (later) the assist panel."""
