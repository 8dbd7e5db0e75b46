"""The Typer CLI: parse, call one workflow function, print. Imports no torch at module level."""
