"""Detection: rules over the sealed records, alerts and their triage as records too.

- :mod:`~otaudit.detect.event`: what a rule sees of a record;
- :mod:`~otaudit.detect.conditions` and :mod:`~otaudit.detect.rules`: the YAML rule
  language, its validation, and the built-in rules (``builtin.yaml``);
- :mod:`~otaudit.detect.engine`: the deterministic engine feeding every rule's state:
  :mod:`~otaudit.detect.state` (findings, the shared base, ``match``),
  :mod:`~otaudit.detect.windows` (``threshold``, ``sequence``) and
  :mod:`~otaudit.detect.baselines` (``new_value``, ``silence``);
- :mod:`~otaudit.detect.run`: over history, and the streaming detector;
- :mod:`~otaudit.detect.process`: the streaming detector in a process of its own;
- :mod:`~otaudit.detect.alerts`: alert and triage records, reading them back;
- :mod:`~otaudit.detect.notify`: webhook and OTLP notifications with retries.

``docs/detection.md`` is the user's guide.
"""
