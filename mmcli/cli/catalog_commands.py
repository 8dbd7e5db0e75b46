"""recipes (ls, cat, cp, validate, schema) and datasets (ls, make)."""

from __future__ import annotations

from typing import Annotated, Any, Optional

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
                                                 "mmcli recipes validate my-recipe.yaml --data",
                                                 "mmcli recipes validate recipes/quickstart.yaml model.fusion.type=gated"))
def recipes_validate(file: Annotated[str, typer.Argument(help="Recipe file or built-in name.")], overrides: OverridesArg = None,
                     data: Annotated[bool, typer.Option("--data", help="Also check the recipe against its manifest "
                                                        "first (columns, splits, ids, the media files of a sample of "
                                                        "rows), in a second or two, before the schema is loaded.")] = False,
                     json_output: JsonFlag = False, quiet: QuietFlag = False, debug: DebugFlag = False) -> None:
    """Check a recipe against the schema (exit 2 with the offending key if invalid); with --data, against its
    manifest too (exit 2 naming each problem)."""
    def work() -> dict[str, Any]:
        checked = None
        if data:  # torch-free and quick: a wrong column or folder is said before the heavy imports
            from mmcli.workflows.data_check import check_recipe_data

            checked = check_recipe_data(file, overrides or [])
        from mmcli.recipe.loader import load_recipe

        recipe = load_recipe(file, overrides or [])
        result = {"valid": True, "name": recipe.name, "inputs": list(recipe.inputs), "tasks": list(recipe.tasks)}
        if checked is not None:
            result |= {"data": {key: value for key, value in checked.items() if key != "warnings"},
                       "warnings": checked["warnings"]}
        return result

    def render(result: dict[str, Any]) -> None:
        typer.echo(f"{file}: valid (inputs: {', '.join(result['inputs'])}; tasks: {', '.join(result['tasks'])})")
        if "data" in result:
            checked = result["data"]
            typer.echo(f"{checked['manifest']}: {checked['rows']} rows, every column the recipe names is there, "
                       f"{checked['files_checked']} media files checked ({checked['seconds']:.2f} s)")

    execute(mode(json_output, quiet, debug), work, render)


@recipes_app.command("init", epilog=examples("mmcli recipes init --manifest my.csv",
                                             "mmcli recipes init --manifest data/photos.csv -o photos.yaml --label species"))
def recipes_init(manifest: Annotated[str, typer.Option("--manifest", help="CSV, JSONL or Parquet manifest; media "
                                                       "paths relative to it.")],
                 output: Annotated[str, typer.Option("--output", "-o", help="Recipe file to write.")] = "recipe.yaml",
                 label: Annotated[Optional[str], typer.Option("--label", help="The column to predict (default: "
                                                              "guessed).")] = None,
                 force: Annotated[bool, typer.Option("--force", help="Replace an existing recipe file.")] = False,
                 json_output: JsonFlag = False, quiet: QuietFlag = False, debug: DebugFlag = False) -> None:
    """Write a recipe for your own manifest that trains as it is: columns become inputs by their content (paths
    ending .png/.jpg: image, .wav/.flac/.mp3: audio, .mp4/.avi/.mov: video, free text: text), the label column a
    task (few distinct values: classification, many numbers: regression), a 'split' column the splits (else
    80/10/10, seeded), an 'id' column the row ids (else row numbers). Every guess is a comment in the file."""
    def work() -> dict[str, Any]:
        from mmcli.workflows.init_recipe import init_recipe

        return init_recipe(manifest, output, label=label, force=force)

    def render(result: dict[str, Any]) -> None:
        for column in result["columns"]:
            role = f"{column['kind']} {column['role']}" if column["kind"] else column["role"]
            typer.echo(f"  {column['column']}: {role} ({column['why']})")
        typer.echo(f"wrote {result['output']}; train it with: mmcli finetune {result['output']}")

    execute(mode(json_output, quiet, debug), work, render)


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
    """The model a recipe builds: every layer and its parameter count per input, fusion and head; each
    encoder's read-out and dropouts; the optimisation it trains with (effective defaults, parameter groups).
    No training and no preprocessing: shapes come from the preprocessing settings (text vocabularies at their
    configured maximum), classes from the manifest's label columns when it can be read."""
    out = mode(json_output, quiet, debug)

    def work() -> dict[str, Any]:
        from mmcli.recipe.loader import load_recipe
        from mmcli.workflows.show_model import show_model

        return show_model(load_recipe(file, overrides or []))

    execute(out, work, _render_model)


def _render_model(result: dict[str, Any]) -> None:
    from rich.table import Table

    from mmcli.cli.render import console

    table = Table("component / layer", "parameters", title=f"{result['recipe']} (hidden_size {result['hidden_size']})")
    for component in result["components"]:
        table.add_row(f"[bold]{component['component']}[/] ({component['type']})", f"[bold]{component['parameters']:,}[/]")
        for layer in component["layers"]:
            table.add_row(f"  {layer['name']}: {layer['layer']}", f"{layer['parameters']:,}")
    table.add_row("[bold]total[/] (trainable)", f"[bold]{result['parameters']:,}[/] ({result['trainable']:,})")
    console.print(table)
    encoders = Table("input", "encoder", "read-out", "dropouts", title="encoders")
    for row in result["encoders"]:
        shown = {key: ", ".join(f"{k} {v}" for k, v in row[key].items()) or "-" for key in ("readout", "dropouts")}
        kind = f"{row['type']} (shares {row['shares']}'s)" if row["shares"] else row["type"]
        encoders.add_row(f"{row['input']} ({row['modality']})", kind, shown["readout"], shown["dropouts"])
    console.print(encoders)
    training = dict(result["training"])
    groups, dropouts = training.pop("parameter_groups"), training.pop("dropouts")
    optimisation = Table("setting", "value", title="optimisation (effective values, defaults included)")
    for key, value in training.items():
        optimisation.add_row(f"training.{key}", str(value))
    for key, value in dropouts.items():
        optimisation.add_row(key, str(value))
    for group in groups:
        optimisation.add_row(f"group: lr {group['learning_rate']:g}, weight decay {group['weight_decay']:g}",
                             f"{group['tensors']} tensors, {group['parameters']:,} parameters "
                             f"(e.g. {', '.join(group['examples'][:2])})")
    console.print(optimisation)
    for note in result["notes"]:
        console.print(f"note: {note}")


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
