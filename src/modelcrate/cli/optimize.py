"""``modelcrate optimize``: compile a tree model beside itself, verified, for faster serving."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelcrate.cli import app, err


@app.command()
def optimize(
    model_dir: Annotated[Path, typer.Argument(help="Model directory (the model file and its modelcrate.json).")],
) -> None:
    """Compile a scikit-learn tree model or an XGBoost model to ONNX (model.onnx) and check it answers like the
    original on the recorded samples and 10,000 random rows; the server then loads it instead.

    A model that cannot be compiled is left as it is (a warning, exit 0): it serves as before.
    """
    from modelcrate.errors import ModelLoadError
    from modelcrate.tree_compiler import NotCompilable
    from modelcrate.tree_compiler import optimize as compile_model

    try:
        with err.status(f"compiling and verifying {model_dir}..."):
            record = compile_model(model_dir)
    except ModelLoadError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    except NotCompilable as exc:
        err.print(f"[yellow]warning:[/] not compiled, the original model serves as before: {exc}", highlight=False)
        return
    err.print(
        f"[green]wrote[/] {model_dir / record['file']} ({record['converter']}; {record['rows_checked']} rows "
        f"checked, max error {record['max_abs_error']:.3g}, tolerance {record['absolute_tolerance']:g} + "
        f"{record['relative_tolerance']:g} x |value|)",
        highlight=False,
    )
