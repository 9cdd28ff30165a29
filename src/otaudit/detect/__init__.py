"""Detection: rules over the sealed records, alerts and their triage as records too.

- :mod:`~otaudit.detect.event`: what a rule sees of a record;
- :mod:`~otaudit.detect.conditions` and :mod:`~otaudit.detect.rules`: the YAML rule
  language, its validation, and the built-in rules (``builtin.yaml``);
- :mod:`~otaudit.detect.engine`: the deterministic engine (windows, baselines, silence);
- :mod:`~otaudit.detect.run`: over history, and the streaming detector;
- :mod:`~otaudit.detect.process`: the streaming detector in a process of its own;
- :mod:`~otaudit.detect.alerts`: alert and triage records, reading them back;
- :mod:`~otaudit.detect.notify`: webhook and OTLP notifications with retries.

``docs/detection.md`` is the user's guide.
"""
