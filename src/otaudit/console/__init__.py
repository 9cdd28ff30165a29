"""The auditor console: the trail in a browser (``otaudit serve --console HOST:PORT``).

Server-rendered pages under ``/console/`` (Starlette, Jinja2 with autoescaping), a strict
Content-Security-Policy and no inline script; every page view and export is an audited
read, recorded in the ledger before the answer like the read API's. The modules, one
concept each: :mod:`~otaudit.console.app` (the application, headers, errors),
:mod:`~otaudit.console.session` (sign-in, cookie, CSRF), and one module per page.
"""

from otaudit.console.app import build_console_app
from otaudit.console.service import ConsoleService

__all__ = ["ConsoleService", "build_console_app"]
