"""One host's pipeline: a state machine advanced one decision at a time (see machine.py)."""
