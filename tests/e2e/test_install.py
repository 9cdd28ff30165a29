"""The README's install without make works as written: a fresh virtual environment,
``pip install`` of the checkout, and ``otaudit`` runs from it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from otaudit.demo import free_port, wait_ready

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_install_works_as_written(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Installing without make.*?```sh\n(.*?)```", readme, re.S)
    assert block is not None
    commands = [line.split("  #")[0].strip() for line in block.group(1).splitlines()]
    home = tmp_path / "home"
    checkout = home / "otaudit"
    shutil.copytree(ROOT, checkout, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "*.egg-info", "__pycache__", ".*_cache", "otaudit-data",
        "target", "_core*.so",
    ))  # fmt: skip
    # A home of its own (the README's ~ paths land there); pip's cache, cargo's crates and
    # the Rust toolchain stay the user's.
    cache = Path(os.path.expanduser("~/.cache/pip"))
    cargo = Path(os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo")))
    rustup = os.environ.get("RUSTUP_HOME", os.path.expanduser("~/.rustup"))
    path = os.environ.get("PATH", "/usr/bin:/bin")
    env = {"HOME": str(home), "PATH": f"{cargo / 'bin'}:{path}", "PIP_QUIET": "1",
           "PIP_CACHE_DIR": str(cache), "CARGO_HOME": str(cargo),
           "RUSTUP_HOME": rustup}  # fmt: skip
    venv, install, serve = commands
    for command in (venv, install):
        ran = subprocess.run(command, shell=True, cwd=home, env=env, capture_output=True,
                             text=True, timeout=600)  # fmt: skip
        assert ran.returncode == 0, (command, ran.stderr)
    port = free_port()
    grpc = free_port()
    serving = subprocess.Popen(
        f"exec {serve} --http 127.0.0.1:{port} --grpc 127.0.0.1:{grpc}", shell=True, cwd=home,
        env=env, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz", serving)
    finally:
        serving.terminate()
        serving.communicate(timeout=30)
    assert (home / "otaudit-data" / "ledger.db").exists()
