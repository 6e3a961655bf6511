"""Simulated traffic: callers on a PBX and agents on their websockets.

``callcenter demo`` drives the service with it, the whole-path benchmark
drives it harder, and the what-if simulator reuses its distributions. It
talks to the service only through the doors a real peer or agent uses (the
signed generic webhook, ``/ws/agent``, the API for setting up), so every run
is also an end-to-end proof.
"""
