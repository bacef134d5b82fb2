"""Human-readable renderings (HTML) of results, shared by the CLI and, later, the web portal."""
