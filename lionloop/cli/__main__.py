"""`python -m lionloop.cli ...` is the `lionloop` command."""

from lionloop.cli.app import main

main()
