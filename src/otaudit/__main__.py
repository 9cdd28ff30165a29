"""``python -m otaudit``."""

from otaudit.cli import main

main()
