"""A rollout's change report, from its JSON document: HTML (with pictures), Markdown and JSON."""
