"""The ``hygie`` command line: thin Typer commands over the same services the API uses."""
