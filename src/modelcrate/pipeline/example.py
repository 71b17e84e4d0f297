"""An Autopilot-style pipeline on the bundled Abalone data: features -> algorithm -> labels.

Autopilot deploys a classifier as three containers: feature engineering (a fitted scikit-learn transformer),
the algorithm (XGBoost on the engineered features, predicting encoded classes), and post-processing (the
fitted LabelEncoder, turning class numbers back into the original labels). Here the task is Abalone's sex
(F, I, M) from the seven measurements and the ring count. Training is deterministic.

    python -m modelcrate.pipeline.example DIR      # then: modelcrate pipeline serve DIR/pipeline.json
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from modelcrate.predictors import CLASSIFICATION, ModelMetadata, find_model_file
from modelcrate.predictors.trust import record_model_files
from modelcrate.scaffold.sample_models import SEXES, abalone_dataset

PIPELINE_FILE = "pipeline.json"
FEATURES, ALGORITHM, LABELS = "features", "algorithm", "labels"
# Autopilot's own containers pass CSV between them the same way: each container but the last answers in
# its SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT, and the algorithm's inference keys are the next one's input. Each
# container that emits inference keys publishes them in SAGEMAKER_INFERENCE_SUPPORTED, as Autopilot's do.
PIPELINE = {
    "ModelName": "abalone-sex-autopilot-style",
    "Containers": [
        {
            "ContainerHostname": FEATURES,
            "ModelDataUrl": f"models/{FEATURES}",
            "Environment": {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv"},
        },
        {
            "ContainerHostname": ALGORITHM,
            "ModelDataUrl": f"models/{ALGORITHM}",
            "Environment": {
                "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv",
                # The label decoder makes the labels; asking the algorithm for them would be a mistake.
                "SAGEMAKER_INFERENCE_SUPPORTED": "predicted_label,probability,probabilities",
                "SAGEMAKER_INFERENCE_OUTPUT": "predicted_label,probabilities",
            },
        },
        {
            "ContainerHostname": LABELS,
            "ModelDataUrl": f"models/{LABELS}",
            "Environment": {
                "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv",
                "SAGEMAKER_INFERENCE_SUPPORTED": "predicted_label,probability,probabilities,labels",
                "SAGEMAKER_INFERENCE_INPUT": "predicted_label,probabilities",
            },
        },
    ],
    "InferenceExecutionConfig": {"Mode": "Serial"},
}


def pipeline_json() -> str:
    return json.dumps(PIPELINE, indent=2) + "\n"


def _write_metadata(model_dir: Path, framework: str, model_format: str, **known) -> None:
    """The model's modelcrate.json, recording the sha256 of its file as every model modelcrate writes does."""
    from importlib.metadata import version

    package = {"sklearn": "scikit-learn"}.get(framework, framework)
    metadata = ModelMetadata(
        framework=framework, framework_version=version(package), model_format=model_format, **known
    )
    record_model_files(model_dir, find_model_file(model_dir), metadata)
    metadata.write(model_dir)


def train_models(models: Path) -> None:
    """Write ``models/features``, ``models/algorithm`` and ``models/labels``."""
    import joblib
    import xgboost
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import LabelEncoder, StandardScaler

    data = abalone_dataset(CLASSIFICATION)
    sexes = np.array(SEXES, dtype=object)[data.y_train]

    # Median imputation lets raw requests leave a measurement empty, as Autopilot's feature containers do.
    features = make_pipeline(SimpleImputer(strategy="median"), StandardScaler()).fit(data.x_train)
    encoder = LabelEncoder().fit(sexes)
    algorithm = xgboost.XGBClassifier(
        n_estimators=100, max_depth=4, learning_rate=0.1, random_state=0, tree_method="hist", n_jobs=1
    ).fit(features.transform(data.x_train), encoder.transform(sexes))

    for name in (FEATURES, ALGORITHM, LABELS):
        (models / name).mkdir(parents=True)
    joblib.dump(features, models / FEATURES / "model.joblib")
    _write_metadata(models / FEATURES, "sklearn", "joblib", feature_names=data.feature_names)
    algorithm.save_model(models / ALGORITHM / "model.json")
    encoded = encoder.transform(encoder.classes_).tolist()
    predicted = encoder.inverse_transform(algorithm.predict(features.transform(data.x_test)))
    accuracy = float((predicted == np.array(SEXES, dtype=object)[data.y_test]).mean())
    _write_metadata(
        models / ALGORITHM,
        "xgboost",
        "json",
        task=CLASSIFICATION,
        labels=encoded,
        metrics={"pipeline_accuracy": round(accuracy, 6)},
    )
    joblib.dump(encoder, models / LABELS / "model.joblib")
    _write_metadata(models / LABELS, "sklearn", "joblib")


def write_autopilot_example(output: Path) -> Path:
    """Train the three models into ``output/models/`` and write ``output/pipeline.json``; returns its path.

    ``output`` may exist (the example's own directory holds the README and the same pipeline.json), but not
    its ``models/``: delete it to train again.
    """
    output = Path(output)
    models = output / "models"
    if models.exists():
        raise FileExistsError(f"{models} already exists; delete it to train the example's models again")
    output.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".models.", dir=output))
    try:
        train_models(staging)
        staging.rename(models)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    definition = output / PIPELINE_FILE
    definition.write_text(pipeline_json())
    return definition


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m modelcrate.pipeline.example DIR", file=sys.stderr)
        return 2
    try:
        definition = write_autopilot_example(Path(args[0]))
    except FileExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    accuracy = ModelMetadata.read(definition.parent / "models" / ALGORITHM).metrics["pipeline_accuracy"]
    print(
        f"wrote {definition} and its models (held-out accuracy {accuracy:.3f}); "
        f"serve it with: modelcrate pipeline serve {definition}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
