"""``modelcrate optimize``: compile a tree model beside itself, verified, for faster serving."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from modelcrate.cli import app, err, error, say, warning
from modelcrate.predictors.compiled import MISSING_BY_GRAPH, MISSING_BY_ORIGINAL, MISSING_REFUSED

MISSING_VALUES = {
    MISSING_BY_GRAPH: "answered by the compiled model (checked)",
    MISSING_BY_ORIGINAL: "answered by the original model (the compiled one routes them differently)",
    MISSING_REFUSED: "refused, as by the original model",
}


@app.command()
def optimize(
    model_dir: Annotated[Path, typer.Argument(help="Model directory (the model file and its modelcrate.json).")],
) -> None:
    """Compile a scikit-learn tree model or an XGBoost model to ONNX (model.onnx) and check it answers like the
    original on the recorded samples and 10,000 random rows; the server then loads it instead.

    A model that cannot be compiled is left as it is (a warning, exit 0): it serves as before.
    """
    from modelcrate.compiler.trees import NotCompilable
    from modelcrate.compiler.trees import optimize as compile_model
    from modelcrate.errors import ModelLoadError

    try:
        with err.status(Text(f"compiling and verifying {model_dir}...")):
            record = compile_model(model_dir)
    except ModelLoadError as exc:
        error(str(exc))
        raise typer.Exit(2) from None
    except NotCompilable as exc:
        warning(f"not compiled, the original model serves as before: {exc}")
        return
    say(
        f"{model_dir / record['file']} ({record['converter']}; {record['rows_checked']} rows "
        f"checked, max error {record['max_abs_error']:.3g}, tolerance {record['absolute_tolerance']:g} + "
        f"{record['relative_tolerance']:g} x |value|); records with missing values: "
        f"{MISSING_VALUES[record['missing_values']]}",
        "wrote",
        "green",
    )
