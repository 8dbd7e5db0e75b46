"""recipes (ls, cat, cp, validate, schema) and datasets (ls, make)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mmcli.cli.options import DebugFlag, JsonFlag, OverridesArg, QuietFlag, examples
from mmcli.cli.state import execute, mode

recipes_app = typer.Typer(help="List, show, copy, validate recipes and print their JSON schema.", no_args_is_help=True,
                          rich_markup_mode="rich")
datasets_app = typer.Typer(help="Built-in datasets the project generates itself.", no_args_is_help=True,
                           rich_markup_mode="rich")


@recipes_app.command("ls", epilog=examples("mmcli recipes ls", "mmcli recipes ls --json"))
def recipes_ls(json_output: JsonFlag = False, quiet: QuietFlag = False, debug: DebugFlag = False) -> None:
    """List the built-in recipes."""
    def work() -> dict[str, Any]:
        from mmcli.workflows.catalog import list_recipes

        return {"recipes": list_recipes()}

    def render(result: dict[str, Any]) -> None:
        from rich.table import Table

        from mmcli.cli.render import console

        table = Table("name", "description")
        for row in result["recipes"]:
            table.add_row(row["name"], row["description"])
        console.print(table)

    execute(mode(json_output, quiet, debug), work, render)


@recipes_app.command("cat", epilog=examples("mmcli recipes cat quickstart"))
def recipes_cat(name: Annotated[str, typer.Argument(help="Built-in recipe name or file.")],
                json_output: JsonFlag = False, quiet: QuietFlag = False, debug: DebugFlag = False) -> None:
    """Print a recipe."""
    def work() -> dict[str, Any]:
        from mmcli.workflows.catalog import recipe_text

        return recipe_text(name)

    execute(mode(json_output, quiet, debug), work, lambda r: typer.echo(r["text"], nl=False))


@recipes_app.command("cp", epilog=examples("mmcli recipes cp quickstart my-recipe.yaml"))
def recipes_cp(name: Annotated[str, typer.Argument(help="Built-in recipe name.")],
               dest: Annotated[str, typer.Argument(help="Destination file or folder.")],
               json_output: JsonFlag = False, quiet: QuietFlag = False, debug: DebugFlag = False) -> None:
    """Copy a built-in recipe to edit it."""
    def work() -> dict[str, Any]:
        from mmcli.workflows.catalog import copy_recipe

        return copy_recipe(name, dest)

    execute(mode(json_output, quiet, debug), work, lambda r: typer.echo(f"copied {r['source']} -> {r['dest']}"))


@recipes_app.command("validate", epilog=examples("mmcli recipes validate my-recipe.yaml",
                                                 "mmcli recipes validate recipes/quickstart.yaml model.fusion.type=gated"))
def recipes_validate(file: Annotated[str, typer.Argument(help="Recipe file or built-in name.")], overrides: OverridesArg = None,
                     json_output: JsonFlag = False, quiet: QuietFlag = False, debug: DebugFlag = False) -> None:
    """Check a recipe against the schema (exit 2 with the offending key if invalid)."""
    def work() -> dict[str, Any]:
        from mmcli.recipe.loader import load_recipe

        recipe = load_recipe(file, overrides or [])
        return {"valid": True, "name": recipe.name, "inputs": list(recipe.inputs), "tasks": list(recipe.tasks)}

    execute(mode(json_output, quiet, debug), work,
            lambda r: typer.echo(f"{file}: valid (inputs: {', '.join(r['inputs'])}; tasks: {', '.join(r['tasks'])})"))


@recipes_app.command("schema", epilog=examples("mmcli recipes schema > recipe.schema.json", "mmcli recipes schema --json"))
def recipes_schema(json_output: JsonFlag = False, debug: DebugFlag = False) -> None:
    """Print the recipe JSON schema (for editor validation); lists every registered component. With --json,
    the schema is the "schema" field of the usual result object."""
    import json

    def work() -> dict[str, Any]:
        from mmcli.recipe.schema import recipe_model

        return {"schema": recipe_model().model_json_schema()}

    execute(mode(json_output, False, debug), work, lambda r: typer.echo(json.dumps(r["schema"], indent=2)))


@recipes_app.command("show-model", epilog=examples("mmcli recipes show-model recipes/quickstart.yaml",
                                                    "mmcli recipes show-model quickstart model.fusion.type=concat --json"))
def recipes_show_model(file: Annotated[str, typer.Argument(help="Recipe file or built-in name.")],
                       overrides: OverridesArg = None, json_output: JsonFlag = False, quiet: QuietFlag = False,
                       debug: DebugFlag = False) -> None:
    """The model a recipe builds: every layer and its parameter count per input, fusion and head, without
    training (the processors are fitted first: preprocessing is cached and reused by finetune)."""
    out = mode(json_output, quiet, debug)

    def work() -> dict[str, Any]:
        from mmcli.recipe.loader import load_recipe
        from mmcli.workflows.show_model import show_model

        return show_model(load_recipe(file, overrides or []), quiet=not out.show_progress)

    def render(result: dict[str, Any]) -> None:
        from rich.table import Table

        from mmcli.cli.render import console

        table = Table("component / layer", "parameters", title=f"{result['recipe']} (hidden_size {result['hidden_size']})")
        for component in result["components"]:
            table.add_row(f"[bold]{component['component']}[/] ({component['type']})", f"[bold]{component['parameters']:,}[/]")
            for layer in component["layers"]:
                table.add_row(f"  {layer['name']}: {layer['layer']}", f"{layer['parameters']:,}")
        table.add_row("[bold]total[/] (trainable)", f"[bold]{result['parameters']:,}[/] ({result['trainable']:,})")
        console.print(table)

    execute(out, work, render)


@datasets_app.command("ls", epilog=examples("mmcli datasets ls"))
def datasets_ls(json_output: JsonFlag = False, quiet: QuietFlag = False, debug: DebugFlag = False) -> None:
    """List the built-in datasets."""
    def work() -> dict[str, Any]:
        from mmcli.workflows.catalog import list_datasets

        return {"datasets": list_datasets()}

    def render(result: dict[str, Any]) -> None:
        for row in result["datasets"]:
            typer.echo(f"{row['name']}: {row['description']}")

    execute(mode(json_output, quiet, debug), work, render)


@datasets_app.command("make", epilog=examples("mmcli datasets make shapes data/shapes",
                                              "mmcli datasets make shapes data/small --size 200 --seed 1"))
def datasets_make(
    name: Annotated[str, typer.Argument(help="Dataset name (see 'mmcli datasets ls').")],
    directory: Annotated[str, typer.Argument(help="Folder to write the manifest and media into.")],
    size: Annotated[int, typer.Option("--size", min=1, help="Number of rows.")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same bytes).")] = 0,
    num_proc: Annotated[int, typer.Option("--num-proc", min=1, help="Worker processes.")] = 2,
    force: Annotated[bool, typer.Option("--force", help="Write into a folder that holds other files.")] = False,
    json_output: JsonFlag = False, quiet: QuietFlag = False, debug: DebugFlag = False,
) -> None:
    """Generate a built-in dataset: manifest plus media files, deterministically (refuses a folder of other files)."""
    def work() -> dict[str, Any]:
        from mmcli.workflows.catalog import make_dataset

        return make_dataset(name, directory, size=size, seed=seed, num_proc=num_proc, force=force)

    execute(mode(json_output, quiet, debug), work,
            lambda r: typer.echo(f"wrote {r.get('rows')} rows to {r.get('manifest')} in {r.get('seconds', 0):.1f} s"))
