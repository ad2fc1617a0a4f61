"""Read-only views of a run (safe while it writes): status, pool queries, export, the HTML report.
Nothing here imports the loop."""
