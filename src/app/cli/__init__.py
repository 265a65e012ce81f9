"""The command line: typer commands that parse options, call the composition root and print."""
