"""One invocation, free of HTTP: decode -> predict -> inference keys -> encode, with the user's hooks."""

from __future__ import annotations

import logging

import numpy as np

from modelcrate.predictors import (
    FEATURE_TRANSFORM,
    LABEL_DECODING,
    InvalidInput,
    ModelMetadata,
    Prediction,
    Predictor,
    load_predictor,
)
from modelcrate.predictors.trust import verify_recorded
from modelcrate.serving import codecs
from modelcrate.serving.config import INFERENCE_KEYS, ServingConfig, parse_keys
from modelcrate.serving.errors import BadRequest, ConfigError, UnsupportedMediaType
from modelcrate.serving.hooks import RequestContext, UserHooks, load_user_hooks

log = logging.getLogger("modelcrate.serving")
CUSTOM_ATTRIBUTE_KEYS = "inference_output"
FLOAT32_MAX = float(np.finfo(np.float32).max)


# What a label decoder decodes; the other keys of its input pass through.
DECODED_KEYS = ("predicted_label", "labels")


def supported_keys(predictor: Predictor | None, inference_input: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """The inference keys a predictor can emit (None: unknown, the user's hooks decide)."""
    if predictor is None:
        return None
    if predictor.task == FEATURE_TRANSFORM:
        return ()
    if predictor.task == LABEL_DECODING:
        return tuple(k for k in INFERENCE_KEYS if k in DECODED_KEYS or k in (inference_input or ()))
    if predictor.task != "classification":
        return ("predicted_label",)
    if predictor.has_probabilities:
        return INFERENCE_KEYS
    return ("predicted_label", "labels")


@codecs.cache_short_headers(maxsize=128)
def keys_from_custom_attributes(header: str) -> tuple[str, ...] | None:
    """``X-Amzn-SageMaker-Custom-Attributes: inference_output=predicted_label,probabilities`` (``;`` between
    attributes). Other attributes are the user's and are left alone."""
    for attribute in header.split(";"):
        name, sep, value = attribute.partition("=")
        if sep and name.strip().lower().replace("-", "_") == CUSTOM_ATTRIBUTE_KEYS:
            try:
                return parse_keys(value, "X-Amzn-SageMaker-Custom-Attributes inference_output")
            except ConfigError as exc:
                raise BadRequest(str(exc)) from None
    return None


class InferenceService:
    def __init__(self, config: ServingConfig, model, hooks: UserHooks | None = None):
        self.config = config
        self.model = model
        self.hooks = hooks or UserHooks()
        self.predictor = model if isinstance(model, Predictor) else None
        names = self.predictor.feature_names if self.predictor else None
        self.schema = codecs.Schema(
            tuple(names) if names else None, self.predictor.n_features if self.predictor else None
        )
        self.input_types = tuple(
            t
            for t in codecs.DECODERS
            if t != codecs.LIBSVM or (self.predictor is not None and self.predictor.framework == "xgboost")
        )
        self.transforms_features = self.predictor is not None and self.predictor.task == FEATURE_TRANSFORM
        self.decodes_labels = self.predictor is not None and self.predictor.task == LABEL_DECODING
        self.output_keys = config.inference_output
        if self.transforms_features and self.output_keys:
            raise ConfigError(
                f"SAGEMAKER_INFERENCE_OUTPUT={','.join(self.output_keys)} is set, but this container serves a "
                f"{self._model_kind()}, which answers with transformed features, not inference keys; unset it "
                "here and set it on the model container that follows in the pipeline"
            )
        if self.decodes_labels and config.inference_input and "predicted_label" not in config.inference_input:
            raise ConfigError(
                f"SAGEMAKER_INFERENCE_INPUT={','.join(config.inference_input)} has no predicted_label, which this "
                "label decoder turns into class names; name the keys the previous container sends, in its order"
            )
        derived = supported_keys(self.predictor, config.inference_input)
        hinted = config.inference_supported
        if self.transforms_features:
            self.allowed_keys = ()
        elif derived and hinted:
            self.allowed_keys = tuple(k for k in derived if k in hinted)
        else:
            self.allowed_keys = derived or hinted
        if self.output_keys and self.allowed_keys is not None:
            refused = [k for k in self.output_keys if k not in self.allowed_keys]
            if refused:
                raise ConfigError(
                    f"SAGEMAKER_INFERENCE_OUTPUT asks for {', '.join(refused)}, which this "
                    f"{self._model_kind()} cannot emit; it supports {', '.join(self.allowed_keys)}"
                )
        hook = self.hooks.get
        self._transform_fn = hook("transform_fn")
        self._input_fn = hook("input_fn") or self.default_input_fn
        self._predict_fn = hook("predict_fn") or self.default_predict_fn
        self._output_fn = hook("output_fn") or self.default_output_fn
        # Requests can share one predict call only when the runtime's own predict_fn scores feature records.
        self.batchable = (
            self.predictor is not None
            and not self.decodes_labels
            and self._transform_fn is None
            and hook("predict_fn") is None
        )

    @classmethod
    def load(cls, config: ServingConfig) -> InferenceService:
        hooks = load_user_hooks(config.code_dir, config.program)
        model_fn = hooks.get("model_fn")
        if model_fn:
            # The user's code picks the files to load; what modelcrate.json records is still checked first.
            verify_recorded(config.model_dir, ModelMetadata.read(config.model_dir), config.accept_model_mismatch)
            model = model_fn(str(config.model_dir), None)
        else:
            model = load_predictor(
                config.model_dir, config.model_format, config.model_file, accept_mismatch=config.accept_model_mismatch
            )
        return cls(config, model, hooks)

    def _model_kind(self) -> str:
        p = self.predictor
        return f"{p.framework} {p.task.replace('_', ' ')} model" if p else "model"

    def _supported_keys_phrase(self) -> str:
        return ", ".join(self.allowed_keys) or "no inference keys (it answers with transformed features)"

    def warm_up(self) -> None:
        """One prediction before serving, so the first client does not pay for lazy initialisation."""
        if self.predictor and self.predictor.n_features:
            try:
                self.predictor.predict(np.zeros((1, self.predictor.n_features)))
            except Exception:  # a model that cannot score zeros is still a model
                log.debug("warm-up prediction failed", exc_info=True)

    # ---- defaults (each replaceable by a hook of the same name) ----

    def default_input_fn(self, body: bytes, content_type: str, context: RequestContext):
        if self.config.inference_input and content_type in codecs.KEYED_DECODERS:
            return codecs.decode_keyed(body, content_type, self.config.inference_input)
        return codecs.decode(body, content_type, self.schema, self.input_types)

    def default_predict_fn(self, data, model, context: RequestContext):
        if self.predictor is None:
            return model.predict(data)
        if isinstance(data, codecs.KeyedRecords) and self.decodes_labels:
            return self.decode_keyed_labels(data)
        return self.predict_records(self.records_of(data, context))

    def records_of(self, data, context: RequestContext) -> np.ndarray:
        """What the default predict_fn hands the predictor: the decoded data as validated float records."""
        if isinstance(data, codecs.KeyedRecords):
            raise BadRequest(
                "this container received keyed records (SAGEMAKER_INFERENCE_INPUT) but its model takes "
                "feature arrays; define predict_fn in code/inference.py"
            )
        if self.decodes_labels and context.inference_keys:
            passed = [k for k in context.inference_keys if k not in DECODED_KEYS]
            if passed:
                raise BadRequest(
                    f"{', '.join(passed)} can only be passed through from keyed records; send "
                    f"{', '.join(self.config.inference_input or ('predicted_label',))} as CSV, JSON or JSON Lines"
                )
        records = np.asarray(data, dtype=np.float64)
        self.check_records(records)
        return records

    def default_output_fn(self, prediction, accept: str, context: RequestContext):
        if self.transforms_features:
            return codecs.encode_features(
                prediction.values if isinstance(prediction, Prediction) else prediction, accept
            )
        return codecs.encode(prediction, accept, context.inference_keys)

    def decode_keyed_labels(self, records: codecs.KeyedRecords) -> codecs.KeyedRecords:
        """A post-processing container: predicted_label and labels go from class indexes to class names;
        the other keys (probabilities...) pass through as the previous container sent them."""
        try:
            labels = self.decode_class_indexes([r["predicted_label"] for r in records])
        except InvalidInput as exc:
            raise BadRequest(f"predicted_label of {exc}") from None
        decoded_lists: dict[tuple, list] = {}  # the labels key: usually one list repeated on every record
        decoded = codecs.KeyedRecords()
        for number, (record, label) in enumerate(zip(records, labels, strict=True), start=1):
            listed = record.get("labels")
            if listed is None:  # not sent: the classes, in index order as the probabilities are
                decoded.append({**record, "predicted_label": label, "labels": self.predictor.labels})
                continue
            if not isinstance(listed, list):
                raise BadRequest(f"record {number}: labels {listed!r:.40} is not a list of class indexes")
            key = tuple(listed)
            if key not in decoded_lists:
                try:
                    decoded_lists[key] = self.decode_class_indexes(listed)
                except InvalidInput:
                    raise BadRequest(
                        f"record {number}: labels {listed!r:.40} are not class indexes of this label encoder "
                        f"(whole numbers from 0 to {len(self.predictor.labels) - 1})"
                    ) from None
            decoded.append({**record, "predicted_label": label, "labels": decoded_lists[key]})
        return decoded

    def decode_class_indexes(self, indexes: list) -> list:
        """Class names for class indexes (ints, or floats such as XGBoost's 2.0); InvalidInput names the bad one."""
        try:
            records = np.array(indexes, dtype=np.float64).reshape(len(indexes), 1)
        except (TypeError, ValueError):
            number, bad = next((i, v) for i, v in enumerate(indexes, start=1) if not isinstance(v, int | float))
            raise InvalidInput(f"record {number}: {bad!r:.40} is not a class index (a whole number)") from None
        return self.predictor.predict(records).values.tolist()

    def check_records(self, records: np.ndarray) -> None:
        p = self.predictor
        if records.ndim != 2 or records.shape[0] == 0:
            raise BadRequest("no records to predict")
        if p.n_features is not None and records.shape[1] != p.n_features:
            raise BadRequest(f"expected {p.n_features} features per record, got {records.shape[1]}")
        if np.isfinite(records).all():
            return
        for bad, allowed, what in (
            (np.isnan, p.accepts_nan, "missing (NaN)"),
            (np.isinf, p.accepts_inf, "infinite"),
        ):
            if not allowed:
                where = np.argwhere(bad(records))
                if len(where):
                    r, c = where[0]
                    raise BadRequest(
                        f"record {r + 1}, feature {c + 1} is {what}; this {self._model_kind()} cannot take it"
                    )

    # ---- the request ----

    def request_context(
        self,
        content_type: str | None,
        accept: str | None,
        custom_attributes: str | None = None,
        inference_id: str | None = None,
    ) -> RequestContext:
        """What the headers ask for: input and response types, inference keys. Raises HttpError for client errors."""
        response_type = codecs.negotiate(accept, self.config.default_accept)
        keys = self.output_keys
        if custom_attributes:
            requested = keys_from_custom_attributes(custom_attributes)
            if requested is not None:
                if self.allowed_keys is not None and not set(requested) <= set(self.allowed_keys):
                    raise BadRequest(
                        f"inference_output {','.join(requested)}: this {self._model_kind()} supports "
                        f"{self._supported_keys_phrase()}"
                    )
                keys = requested
        if not content_type:
            raise UnsupportedMediaType(f"Content-Type header is missing; send one of {', '.join(self.input_types)}")
        return RequestContext(codecs.media_type(content_type), response_type, keys, custom_attributes, inference_id)

    def invoke(
        self,
        body: bytes,
        content_type: str | None,
        accept: str | None,
        custom_attributes: str | None = None,
        inference_id: str | None = None,
    ) -> tuple[bytes, str]:
        """Answer one /invocations request: (body, content type). Raises HttpError for client errors."""
        context = self.request_context(content_type, accept, custom_attributes, inference_id)
        try:
            if self._transform_fn:
                result = self._transform_fn(self.model, body, context.content_type, context.accept, context)
            else:
                data = self._input_fn(body, context.content_type, context)
                result = self._output_fn(self._predict_fn(data, self.model, context), context.accept, context)
        except InvalidInput as exc:
            raise BadRequest(str(exc)) from None
        return self._response(result, context.accept)

    # ---- the same request in three steps, so that a batcher can predict many requests' records at once ----

    def decode_records(self, body: bytes, context: RequestContext) -> np.ndarray:
        try:
            return self.records_of(self._input_fn(body, context.content_type, context), context)
        except InvalidInput as exc:
            raise BadRequest(str(exc)) from None

    def predict_records(self, records: np.ndarray) -> Prediction:
        try:
            return self.predictor.predict(records)
        except InvalidInput as exc:
            raise BadRequest(str(exc)) from None
        except ValueError:
            # Models computing in float32 (scikit-learn's trees) refuse values beyond its range: checked only
            # once a prediction failed, to keep the check off the common path.
            beyond = np.argwhere(np.isfinite(records) & (np.abs(records) > FLOAT32_MAX))
            if len(beyond):
                r, c = beyond[0]
                raise BadRequest(
                    f"record {r + 1}, feature {c + 1} is {records[r, c]:g}, beyond the float32 range "
                    f"(+-{FLOAT32_MAX:.4g}) this {self._model_kind()} computes in"
                ) from None
            raise

    def encode(self, prediction: Prediction, context: RequestContext) -> tuple[bytes, str]:
        try:
            result = self._output_fn(prediction, context.accept, context)
        except InvalidInput as exc:
            raise BadRequest(str(exc)) from None
        return self._response(result, context.accept)

    @staticmethod
    def _response(result, response_type: str) -> tuple[bytes, str]:
        if isinstance(result, tuple):
            result, response_type = result
        if isinstance(result, str):
            result = result.encode()
        return result, response_type
