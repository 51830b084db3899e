"""The fault suite (issue 9): kills under load, a full disk, bad frames on the wire, hostile tool
input, many gateways at once. ``uv run pytest -m faults`` runs it alone; its short form runs in
the normal suite, its long form with ``SESSIOND_FAULTS_LONG=1``."""
