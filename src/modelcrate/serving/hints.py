"""``SAGEMAKER_INFERENCE_SUPPORTED``: the inference keys a container can emit, published in its environment as a
hint to whoever configures it (SageMaker's Autopilot containers do the same). The runtime also honours it: a
container emits only keys that are both in the hint and within what its model can emit."""

from __future__ import annotations

from pathlib import Path

from modelcrate.predictors import CLASSIFICATION, FEATURE_TRANSFORM, LABEL_DECODING, ModelLoadError, load_predictor
from modelcrate.serving.config import INFERENCE_KEYS

INFERENCE_SUPPORTED = "SAGEMAKER_INFERENCE_SUPPORTED"


def keys_of_task(task: str, has_probabilities: bool = True) -> tuple[str, ...]:
    """The keys a model of ``task`` can emit (none for a feature transformer, which answers with features)."""
    if task == FEATURE_TRANSFORM:
        return ()
    if task == LABEL_DECODING:
        # It decodes predicted_label and labels and passes its input's probability and probabilities through.
        return INFERENCE_KEYS
    if task == CLASSIFICATION:
        return INFERENCE_KEYS if has_probabilities else ("predicted_label", "labels")
    return ("predicted_label",)


def model_task(model_dir: Path) -> tuple[str, bool] | None:
    """(task, has probabilities) of the model in ``model_dir``; None when the runtime cannot load it itself
    (a model only the user's model_fn loads)."""
    try:
        predictor = load_predictor(model_dir)
    except ModelLoadError:
        return None
    return predictor.task, predictor.has_probabilities


def hint(keys: tuple[str, ...]) -> str:
    return ",".join(keys)


def hint_of_model(model_dir: Path) -> str:
    """The hint for the model in ``model_dir``; empty when it emits no keys or only the user's code loads it."""
    task = model_task(model_dir)
    return hint(keys_of_task(*task)) if task else ""


def before_label_decoder(keys: tuple[str, ...]) -> tuple[str, ...]:
    """An algorithm container followed by a label decoder leaves ``labels`` out, as Autopilot's do: the decoder
    makes the labels, so the algorithm must not be asked for them."""
    return tuple(key for key in keys if key != "labels")
