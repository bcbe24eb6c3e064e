"""Tamper-evident audit log: canonical JSON, a Merkle tree over its records, signed checkpoints."""
