"""Command-line interface (Typer + rich): parses, calls one pipeline function, renders."""
