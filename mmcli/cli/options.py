"""Options shared by the commands."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout (logs and progress go to stderr).")]
QuietFlag = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or tables.")]
DebugFlag = Annotated[bool, typer.Option("--debug", help="Show Python tracebacks on errors.")]
RecipeArg = Annotated[str, typer.Argument(help="Recipe file, or the name of a built-in recipe (see 'mmcli recipes ls').")]
OverridesArg = Annotated[Optional[list[str]], typer.Argument(help="Overrides: key.path=value or ~key.path (removes the key).", show_default=False)]
RunDirArg = Annotated[str, typer.Argument(help="Run directory written by 'mmcli finetune' (e.g. runs/quickstart).")]
NumProcOpt = Annotated[int, typer.Option("--num-proc", min=1, help="Processes for decoding media.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue the run directory's newest checkpoint (same recipe; "
                                         "a changed key is named). Refused when there is no run there; a run stopped "
                                         "before its first checkpoint starts again, with a warning.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace a run already in the run directory, once the new one has finished.")]


def examples(*lines: str) -> str:
    """A help epilog of copy-pasteable examples (each on its own line)."""
    return "[bold]Examples[/]\n\n" + "\n\n".join(f"  $ {line}" for line in lines)
