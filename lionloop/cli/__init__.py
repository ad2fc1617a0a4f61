"""The `lionloop` command line (Typer + Rich): `app.py` holds the run commands and mounts the
`pool`, `report` and `bench` groups; `common.py` what every command shares."""
