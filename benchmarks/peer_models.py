"""Saves a sample model in a peer server's own format; benchmarks/peers.py runs it with the peer's Python.

    PEER_PYTHON peer_models.py {mlflow|bentoml} {sklearn|xgboost} MODEL_FILE DESTINATION

MODEL_FILE is the file the modelcrate server loads (scikit-learn: joblib; XGBoost: the scikit-learn API's
JSON). MLflow: ``mlflow.<flavour>.save_model`` into the directory DESTINATION (scikit-learn: MLflow's default
skops format, trusting the tree type). BentoML: the flavour's
``save_model`` into the model store under BENTOML_HOME, with the name DESTINATION. The peer's virtualenv has
the same scikit-learn and XGBoost versions as modelcrate's, so the model is the same.
"""

from __future__ import annotations

import sys


def load_model(framework: str, model_file: str):
    if framework == "xgboost":
        import xgboost

        model = xgboost.XGBRegressor()
        model.load_model(model_file)
        return model
    import joblib

    return joblib.load(model_file)


def main() -> None:
    peer, framework, model_file, destination = sys.argv[1:]
    model = load_model(framework, model_file)
    if peer == "mlflow" and framework == "sklearn":
        import mlflow

        # MLflow 3 saves scikit-learn models with skops, which loads only the types it is told to trust.
        mlflow.sklearn.save_model(model, destination, skops_trusted_types=["sklearn.tree._tree.Tree"])
    elif peer == "mlflow":
        import mlflow

        mlflow.xgboost.save_model(model, destination)
    elif peer == "bentoml":
        import bentoml

        getattr(bentoml, framework).save_model(destination, model)
    else:
        sys.exit(f"peer_models.py: unknown peer {peer!r}; use mlflow or bentoml")


if __name__ == "__main__":
    main()
