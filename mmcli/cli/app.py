"""The mmcli command line. Commands import the core lazily: `mmcli --help` loads no torch."""

from __future__ import annotations

from typing import Annotated

import typer

from mmcli.version import __version__
from mmcli.cli import catalog_commands, run_commands, serve_commands, training_commands
from mmcli.cli.options import examples
from mmcli.cli.state import GLOBAL

HELP = """End-to-end multimodal machine learning (text, image, audio, video) from recipes.

Exit codes: 0 success; 1 runtime failure or a --check out of range; 2 bad input (recipe, manifest, media, arguments)."""

app = typer.Typer(help=HELP, no_args_is_help=True, rich_markup_mode="rich",
                  context_settings={"help_option_names": ["-h", "--help"]},
                  epilog=examples("mmcli datasets make shapes data/shapes", "mmcli run recipes/quickstart.yaml --check",
                                  "mmcli evaluate runs/quickstart --split test --json",
                                  "mmcli finetune recipes/quickstart.yaml model.fusion.type=gated"))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mmcli {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object on stdout; logs and progress on stderr.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or tables.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    GLOBAL.json, GLOBAL.quiet, GLOBAL.debug = json_output, quiet, debug


for command in (training_commands.preprocess, training_commands.pretrain, training_commands.finetune, run_commands.evaluate,
                run_commands.predict, run_commands.encode, run_commands.retrieve, run_commands.report, serve_commands.serve,
                serve_commands.export, training_commands.run):
    app.command(epilog=command.epilog)(command)  # type: ignore[attr-defined]
app.add_typer(catalog_commands.recipes_app, name="recipes")
app.add_typer(catalog_commands.datasets_app, name="datasets")


def main() -> None:
    """The console entry point. With ``--json``, a usage error (an unknown option, a missing argument)
    is one JSON object on stdout too, as every other error is; without it, Typer reports as usual."""
    import sys

    if "--json" not in sys.argv[1:]:
        app()
        return
    from typer._click import exceptions  # Typer's own copy of click's exceptions

    try:
        code = app(standalone_mode=False)  # an Exit comes back as its exit code
    except exceptions.UsageError as error:
        import json

        sys.stdout.write(json.dumps({"ok": False, "error": error.format_message(), "exit_code": error.exit_code}) + "\n")
        error.show()
        sys.exit(error.exit_code)
    except exceptions.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
