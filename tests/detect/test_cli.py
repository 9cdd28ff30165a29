"""The detection commands on awkward input: names that look like console markup, options given
to the group, impossible time ranges, overlong notes."""

from __future__ import annotations

import json
import time
from pathlib import Path

from detect_traffic import MIN, entries, login
from otaudit.detect.alerts import alert_entry
from otaudit.detect.rules import load_rules
from otaudit.detect.run import detect_history
from otaudit.store.sqlite import SQLiteStore
from support import otaudit

NOW = (time.time_ns() // MIN) * MIN


def test_awkward_input(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    store = SQLiteStore(data / "ledger.db")
    try:  # 20 failed logins as a user whose name is console markup
        store.append(list(entries(login(NOW - 30 * MIN + i * MIN, "[/admin]", "10.0.0.9", False)
                                  for i in range(20))))  # fmt: skip
        (finding,) = detect_history(store, load_rules(), since_ns=None, now_ns=NOW).findings
        store.append([alert_entry(finding)])
    finally:
        store.close()
    alert = finding.alert_id

    for args in (["detect", "--since", "1d"], ["alerts"], ["alerts", "show", alert]):
        shown = otaudit(*args, "--data", str(data))
        assert shown.returncode == 0, shown.stderr
        assert "[/admin]" in shown.stdout

    # The group's --data reaches its subcommands.
    ack = otaudit("alerts", "--data", str(data), "ack", alert, "--decision", "escalated",
                  "--note", "IR-1")  # fmt: skip
    assert ack.returncode == 0, ack.stderr
    listed = json.loads(otaudit("alerts", "--data", str(data), "--format", "json").stdout)
    assert listed[0]["state"] == "escalated"

    long = otaudit("alerts", "ack", alert, "--data", str(data), "--decision", "resolved",
                   "--note", "x" * 5000)  # fmt: skip
    assert long.returncode == 2 and "at most 4096 characters (this one has 5000)" in long.stderr
    far = otaudit("detect", "--data", str(data), "--since", "99999999d", "--format", "json")
    assert far.returncode == 0, far.stderr  # from the beginning
    assert [f["id"] for f in json.loads(far.stdout)] == [alert]
    backwards = otaudit("detect", "--data", str(data), "--since", "1d", "--until", "2d")
    assert backwards.returncode == 2 and "must be later than --since" in backwards.stderr
