"""``otaudit demo``: the whole story in one command, against a real server.

1. start ``otaudit serve`` on free ports with a temporary data directory;
2. send instrumented traffic through the real OpenTelemetry SDK (HTTP and gRPC),
   and requests to an example service instrumented with ``otaudit.instrument``;
3. show what the server counted (``/metrics``);
4. stop the server (it signs a final checkpoint) and verify the ledger;
5. answer an auditor's question with SQL; show the signed checkpoint.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from rich.console import Console

from otaudit import datadir
from otaudit.demo_traffic import send_traffic
from otaudit.detect.alerts import read_alerts
from otaudit.dialect import AUDITOR_QUERY
from otaudit.errors import DemoFailed
from otaudit.examples.drive import drive
from otaudit.query import print_table, query_target, run_sql
from otaudit.sqllimits import QueryLimits
from otaudit.verify import verify_ledger

AUDITOR_SQL = AUDITOR_QUERY


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    """Poll ``url`` until it answers 200; DemoFailed if the process exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoFailed(f"otaudit serve exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise DemoFailed(f"otaudit serve did not answer {url} within {timeout_s:.0f} s")


def _metric_lines(text: str) -> list[str]:
    keep = ("otaudit_records_", "otaudit_tree_size", "otaudit_checkpoint_tree_size")
    return [
        line
        for line in text.splitlines()
        if line.startswith(keep) and "_created" not in line and not line.endswith(" 0.0")
    ]


def run_demo(console: Console, keep: Path | None = None) -> None:
    """Run the demo, printing each step; raise DemoFailed if a step fails."""
    with tempfile.TemporaryDirectory(prefix="otaudit-demo-") as tmp:
        data = keep or Path(tmp) / "data"
        http_port, grpc_port, console_port = free_port(), free_port(), free_port()
        console.rule("[bold]1. Start otaudit serve")
        cmd = [
            sys.executable,
            "-m",
            "otaudit",
            "serve",
            "--data",
            str(data),
            "--http",
            f"127.0.0.1:{http_port}",
            "--grpc",
            f"127.0.0.1:{grpc_port}",
            "--origin",
            "demo.otaudit.example/log",
            "--checkpoint-interval",
            "0.2",
            "--console",
            f"127.0.0.1:{console_port}",
        ]
        console.print(" ".join(cmd[2:]))
        proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            wait_ready(f"http://127.0.0.1:{http_port}/healthz", proc)
            console.print(f"OTLP/HTTP on :{http_port}, OTLP/gRPC on :{grpc_port}, ledger in {data}")
            wait_ready(f"http://127.0.0.1:{console_port}/console/signin", proc)
            console.print(
                f"auditor console: http://127.0.0.1:{console_port}/console/ (while the demo"
                " runs; no tokens, so loopback only and no sign-in)"
            )

            console.rule("[bold]2. Send instrumented traffic through the OpenTelemetry SDK")
            sent = send_traffic(f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}")
            console.print(
                f"accounts-api (OTLP/HTTP, gzip) and billing-api (OTLP/gRPC): {sent.spans} spans, "
                f"{sent.audit_spans} of them with audit.action; config-service: {sent.logs} audit "
                "log records through a LoggingHandler attached to the 'audit.system' logger"
            )

            console.rule("[bold]2b. Requests to an example service using otaudit.instrument")
            example = drive(f"http://127.0.0.1:{http_port}", free_port())
            console.print(
                f"accounts service (src/otaudit/examples/accounts.py): {example.requests} requests "
                f"gave {example.audit_spans} audit spans, {example.audit_logs} audit log record "
                f"and {example.other_spans} ordinary spans; actor, result and producer numbering "
                "filled in by the helpers"
            )

            console.rule("[bold]3. What the server counted (/metrics)")
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as resp:
                for line in _metric_lines(resp.read().decode()):
                    console.print("  " + line)
        finally:
            console.rule("[bold]4. Stop the server and verify the ledger")
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        store = datadir.open_store(data, None, readonly=True)
        try:
            report = verify_ledger(store, datadir.verifier_key(data, store, None))
            console.print(
                f"[green]OK[/green]: {report.records} records, every leaf, column, node and "
                f"{report.checkpoints} signed checkpoints check out "
                f"(latest covers {report.checkpoint_size} records)"
            )
            console.rule("[bold]5. Monitoring: the alerts the detection rules sealed (CC7.2)")
            alerts = read_alerts(store)
            for alert in alerts:
                line = f"  {alert.alert_id}  [{alert.severity}] {alert.rule}: {alert.summary}"
                console.print(line, highlight=False, markup=False)
            console.print(f"{len(alerts)} alert(s); triage one with `otaudit alerts ack ID "
                          "--decision resolved --note ...`")  # fmt: skip
            console.rule("[bold]6. The auditor asks: every permission change in the last 90 days")
            console.print(AUDITOR_SQL, highlight=False)
            print_table(run_sql(query_target(store), AUDITOR_SQL, QueryLimits()), console)
            console.rule("[bold]7. The latest signed checkpoint (C2SP tlog-checkpoint)")
            console.print(store.checkpoints()[-1].note, highlight=False, markup=False)
            console.rule("[bold]8. The same trail in a browser")
            console.print(
                f"otaudit serve --data {data if keep else 'DIR'} --console 127.0.0.1:8081,"
                " then open http://127.0.0.1:8081/console/ (records, SQL, alerts, proofs"
                " checked in the browser)",
                highlight=False, markup=False,
            )  # fmt: skip
        finally:
            store.close()
