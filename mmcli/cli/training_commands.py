"""preprocess, pretrain, finetune and run."""

# no `from __future__ import annotations`: the training commands' options are built in a function,
# and Typer reads their annotations as objects

import sys
from typing import Annotated, Any, Callable, Optional

import typer

from mmcli.cli.options import (DebugFlag, JsonFlag, NumProcOpt, OverridesArg, OverwriteOpt, QuietFlag, RecipeArg, ResumeOpt,
                               examples)
from mmcli.cli.state import OutputMode, execute, mode

NumProcessesOpt = Annotated[int, typer.Option("--num-processes", min=1, help="Train with N processes on this machine "
                            "(data parallel, under torchrun: one per GPU, or a share of the CPU cores each).")]
NnodesOpt = Annotated[int, typer.Option("--nnodes", min=1, help="Machines taking part (with --num-processes each).")]
NodeRankOpt = Annotated[int, typer.Option("--node-rank", min=0, help="This machine's rank among --nnodes (0: the main one).")]
MasterAddrOpt = Annotated[Optional[str], typer.Option("--master-addr", help="Address of the machine with --node-rank 0.")]
MasterPortOpt = Annotated[Optional[int], typer.Option("--master-port", help="Free port on the machine with --node-rank 0.")]


def _load(recipe: str, overrides: list[str] | None, columns: bool = True) -> Any:
    """The validated recipe; first (``columns``) the manifest's header against the columns it names, a
    mistake found in under a second instead of after the start-up of a training."""
    from mmcli.recipe.loader import load_recipe

    if columns:
        from mmcli.workflows.data_check import check_columns_early

        check_columns_early(recipe, overrides or [])
    return load_recipe(recipe, overrides or [])


def _execute(out: OutputMode, work: Callable[[], dict[str, Any]], render: Callable[[dict[str, Any]], None],
             launch: Any, load: Callable[[], Any], exit_code: Callable[[dict[str, Any]], int] | None = None) -> None:
    """Run the command here, or again under torchrun with ``--num-processes`` (this process then exits
    with the main process's code); under that launcher, the main process records its exit code."""
    from mmcli.workflows.launch import record_exit

    if launch.wanted:
        _launch(out, launch, load)
    try:
        execute(out, work, render, exit_code=exit_code)
    except typer.Exit as stop:
        record_exit(stop.exit_code)
        raise
    record_exit(0)


def _launch(out: OutputMode, launch: Any, load: Callable[[], Any]) -> None:
    import json

    from mmcli.errors import MmcliError
    from mmcli.workflows.launch import run_launcher

    try:
        load()  # a bad recipe is one line here, before any process starts
        code = run_launcher(launch, sys.argv, out.json)
    except MmcliError as error:
        if out.json:
            sys.stdout.write(json.dumps({"ok": False, "error": error.one_line(), "exit_code": error.exit_code}) + "\n")
        typer.echo(f"error: {error.one_line()}", err=True)
        code = error.exit_code
    raise typer.Exit(code)


def _render_training(result: dict[str, Any]) -> None:
    from mmcli.cli.render import check_table, console, init_lines, metrics_table, preprocess_lines

    if "pretrain" in result:
        _render_stage(result["pretrain"], "pretraining")
    console.print(preprocess_lines(result["preprocess"]))
    if "init" in result["metrics"]["training"]:
        console.print(init_lines(result["metrics"]["training"]["init"]))
    console.print(metrics_table(result["metrics"], title=f"metrics ({result['run_dir']})"))
    training = result["metrics"]["training"]
    console.print(f"best {training['monitor']} = {training['best_score']:.4f} at epoch {training['best_epoch']}; "
                  f"{training['steps']} steps in {training['seconds']:.1f} s; run directory {result['run_dir']}")
    if "check" in result:
        console.print(check_table(result["check"]))


def _render_stage(result: dict[str, Any], stage: str) -> None:
    from mmcli.cli.render import console, metrics_table

    console.print(metrics_table(result["metrics"], title=f"{stage} metrics ({result['run_dir']})"))


def preprocess(
    recipe: RecipeArg, overrides: OverridesArg = None, num_proc: NumProcOpt = 2,
    force: Annotated[bool, typer.Option("--force", help="Rebuild the cache even if it is up to date.")] = False,
    backend: Annotated[str, typer.Option("--backend", help="local (processes on this machine) or ray (Ray Data; pip install 'mmcli\\[ray]').")] = "local",
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="With --backend ray: the cluster to join (default: a local Ray for this call).")] = None,
    json_output: JsonFlag = False, quiet: QuietFlag = False, debug: DebugFlag = False,
) -> None:
    """Validate the manifest, decode media once, fit processors on the train split, write the Arrow cache."""
    out = mode(json_output, quiet, debug)

    def work() -> dict[str, Any]:
        from mmcli.workflows.preprocess import preprocess as run_preprocess

        return run_preprocess(_load(recipe, overrides), num_proc=num_proc, force=force, quiet=not out.show_progress,
                              backend=backend, ray_address=ray_address)

    def render(result: dict[str, Any]) -> None:
        from mmcli.cli.render import console, preprocess_lines

        console.print(preprocess_lines(result))

    execute(out, work, render)


preprocess.epilog = examples(  # type: ignore[attr-defined]
    "mmcli preprocess recipes/quickstart.yaml",
    "mmcli preprocess recipes/quickstart.yaml data.on_error=skip --num-proc 2",
    "mmcli preprocess my.yaml data.manifest=data/other.csv --json",
    "mmcli preprocess recipes/quickstart.yaml --backend ray --ray-address ray://head:10001",
)


def _finetune(recipe: Any, **options: Any) -> dict[str, Any]:
    from mmcli.workflows.finetune import finetune as run_finetune

    return run_finetune(recipe, **options)


def _pretrain(recipe: Any, **options: Any) -> dict[str, Any]:
    from mmcli.workflows.pretrain import pretrain as run_pretrain

    return run_pretrain(recipe, **options)


def _launch_settings(processes: int, nnodes: int, node_rank: int, master_addr: Optional[str],
                     master_port: Optional[int]) -> Any:
    from mmcli.workflows.launch import Launch

    return Launch(processes, nnodes, node_rank, master_addr, master_port)


def _training_command(name: str, workflow: Callable[..., dict[str, Any]], summary: str, run_dir_help: str,
                      *example_lines: str) -> Callable[..., None]:
    """finetune and pretrain: the same arguments and output, each running its own workflow."""

    def command(
        recipe: RecipeArg, overrides: OverridesArg = None, num_proc: NumProcOpt = 2,
        run_dir: Annotated[Optional[str], typer.Option("--run-dir", help=run_dir_help)] = None,
        resume: ResumeOpt = False, overwrite: OverwriteOpt = False,
        num_processes: NumProcessesOpt = 1, nnodes: NnodesOpt = 1, node_rank: NodeRankOpt = 0,
        master_addr: MasterAddrOpt = None, master_port: MasterPortOpt = None,
        json_output: JsonFlag = False, quiet: QuietFlag = False, debug: DebugFlag = False,
    ) -> None:
        out = mode(json_output, quiet, debug)

        def work() -> dict[str, Any]:
            return workflow(_load(recipe, overrides, columns=name != "pretrain"), run_dir=run_dir, num_proc=num_proc,
                            show_progress=out.show_progress, argv=sys.argv, resume=resume, overwrite=overwrite)

        launch = _launch_settings(num_processes, nnodes, node_rank, master_addr, master_port)
        _execute(out, work, _render_training, launch, lambda: _load(recipe, overrides, columns=name != "pretrain"))

    command.__name__ = command.__qualname__ = name  # Typer names the command after the function
    command.__doc__ = summary
    command.epilog = examples(*example_lines)  # type: ignore[attr-defined]
    return command


finetune = _training_command(
    "finetune", _finetune,
    "Train the recipe's model (preprocessing first if needed); keep the best checkpoint and metrics.",
    "Run directory (default: OUTPUT_DIR/NAME from the recipe).",
    "mmcli finetune recipes/quickstart.yaml",
    "mmcli finetune recipes/quickstart.yaml model.fusion.type=attention training.epochs=5",
    "mmcli finetune recipes/quickstart.yaml ~inputs.audio ~inputs.video --run-dir runs/no-av",
    "mmcli finetune recipes/quickstart.yaml training.checkpoint_every=100 --resume",
    "mmcli finetune recipes/quickstart.yaml --num-processes 2",
    "mmcli finetune recipes/pretrain-then-finetune.yaml init=runs/pretrain-then-finetune-pretrain training.freeze_encoders=always",
)
pretrain = _training_command(
    "pretrain", _pretrain,
    "Pretrain without labels: the recipe's 'pretrain' section (objectives such as contrastive), into NAME-pretrain.",
    "Run directory (default: OUTPUT_DIR/NAME-pretrain).",
    "mmcli pretrain recipes/pretrain-then-finetune.yaml",
    "mmcli finetune recipes/pretrain-then-finetune.yaml init=runs/pretrain-then-finetune-pretrain",
    "mmcli pretrain recipes/contrastive.yaml training.epochs=5 --json",
)


def run(
    recipe: RecipeArg, overrides: OverridesArg = None, num_proc: NumProcOpt = 2,
    check: Annotated[bool, typer.Option("--check", help="Compare with the recipe's expected metrics; exit 1 if any is out of range.")] = False,
    sweep: Annotated[Optional[list[str]], typer.Option("--sweep", help="key.path=v1,v2,... : train each value (several --sweep: every combination) and compare.")] = None,
    run_dir: Annotated[Optional[str], typer.Option("--run-dir", help="Run directory (default: OUTPUT_DIR/NAME).")] = None,
    resume: ResumeOpt = False, overwrite: OverwriteOpt = False,
    num_processes: NumProcessesOpt = 1, nnodes: NnodesOpt = 1, node_rank: NodeRankOpt = 0,
    master_addr: MasterAddrOpt = None, master_port: MasterPortOpt = None,
    json_output: JsonFlag = False, quiet: QuietFlag = False, debug: DebugFlag = False,
) -> None:
    """Run every stage of a recipe: preprocess, pretrain (with a 'pretrain' section), finetune, evaluate (and --check)."""
    out = mode(json_output, quiet, debug)

    def work() -> dict[str, Any]:
        from mmcli.workflows.run_recipe import run_recipe
        from mmcli.workflows.sweep import parse_sweep_options, run_sweep

        loaded = _load(recipe, overrides, columns=not sweep)
        grids = parse_sweep_options(sweep or []) or loaded.sweep
        if grids:
            return run_sweep(recipe, loaded, list(overrides or []), grids, num_proc, show_progress=out.show_progress,
                             overwrite=overwrite)
        return run_recipe(loaded, run_dir=run_dir, check=check, num_proc=num_proc,
                          show_progress=out.show_progress, argv=sys.argv, resume=resume, overwrite=overwrite)

    def render(result: dict[str, Any]) -> None:
        if "sweep" in result:
            from mmcli.cli.render import console, sweep_table

            console.print(sweep_table(result))
        else:
            _render_training(result)

    def code(result: dict[str, Any]) -> int:
        if "sweep" in result:
            return 0 if all(row["ok"] for row in result["sweep"]) else 1
        return 0 if result.get("check_passed", True) else 1

    launch = _launch_settings(num_processes, nnodes, node_rank, master_addr, master_port)
    if launch.wanted and sweep:
        typer.echo("error: --sweep runs its trainings one after the other in this process: leave out --num-processes",
                   err=True)
        raise typer.Exit(2)
    _execute(out, work, render, launch, lambda: _load(recipe, overrides), exit_code=code)


run.epilog = examples(  # type: ignore[attr-defined]
    "mmcli run recipes/quickstart.yaml",
    "mmcli run recipes/quickstart.yaml --check",
    "mmcli run recipes/quickstart.yaml --check --overwrite",
    "mmcli run recipes/quickstart.yaml --num-processes 4 --nnodes 2 --node-rank 0 --master-addr 10.0.0.1 --master-port 29500",
    "mmcli run quickstart training.epochs=3 --json",
    "mmcli run recipes/quickstart.yaml --sweep model.fusion.type=concat,gated,tensor",
    "mmcli run recipes/fusion-sweep.yaml",
)
