"""SOC 2 evidence packs: ``otaudit evidence`` builds one, ``otaudit verify-evidence`` checks it.

A pack is a folder an auditor can check offline: per control, the complete population of
the period's records (CSV and JSONL) with the query that selects it and a sample drawn
from the closing checkpoint; the completeness evidence (the checkpoints that open and close
the period, the consistency proof between them, counts per day, producer gaps,
non-conforming records); the configuration in force; a report; and a ``MANIFEST`` of every
file's SHA-256, signed with the log's key. ``docs/evidence.md`` describes each file.
"""
