"""One invocation, free of HTTP: decode -> predict -> inference keys -> encode, with the user's hooks."""

from __future__ import annotations

import logging
from functools import lru_cache

import numpy as np

from modelcrate.predictors import InvalidInput, Predictor, load_predictor
from modelcrate.serving import codecs
from modelcrate.serving.config import INFERENCE_KEYS, ServingConfig, parse_keys
from modelcrate.serving.errors import BadRequest, ConfigError, HttpError, UnsupportedMediaType
from modelcrate.serving.hooks import RequestContext, UserHooks, load_user_hooks

log = logging.getLogger("modelcrate.serving")
CUSTOM_ATTRIBUTE_KEYS = "inference_output"


def supported_keys(predictor: Predictor | None) -> tuple[str, ...] | None:
    """The inference keys a predictor can emit (None: unknown, the user's hooks decide)."""
    if predictor is None:
        return None
    if predictor.task != "classification":
        return ("predicted_label",)
    if predictor.has_probabilities:
        return INFERENCE_KEYS
    return ("predicted_label", "labels")


@lru_cache(maxsize=128)
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
        derived = supported_keys(self.predictor)
        hinted = config.inference_supported
        self.allowed_keys = tuple(k for k in derived if k in hinted) if derived and hinted else derived or hinted
        self.output_keys = config.inference_output
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

    @classmethod
    def load(cls, config: ServingConfig) -> InferenceService:
        hooks = load_user_hooks(config.code_dir, config.program)
        model_fn = hooks.get("model_fn")
        if model_fn:
            model = model_fn(str(config.model_dir), None)
        else:
            model = load_predictor(config.model_dir, config.model_format, config.model_file)
        return cls(config, model, hooks)

    def _model_kind(self) -> str:
        p = self.predictor
        return f"{p.framework} {p.task} model" if p else "model"

    def warm_up(self) -> None:
        """One prediction before serving, so the first client does not pay for lazy initialisation."""
        if self.predictor and self.predictor.n_features:
            try:
                self.predictor.predict(np.zeros((1, self.predictor.n_features)))
            except Exception:  # a model that cannot score zeros is still a model
                log.debug("warm-up prediction failed", exc_info=True)

    # ---- defaults (each replaceable by a hook of the same name) ----

    def default_input_fn(self, body: bytes, content_type: str, context: RequestContext):
        if self.config.inference_input and content_type == codecs.CSV:
            return codecs.decode_keyed_csv(body, self.config.inference_input)
        return codecs.decode(body, content_type, self.schema, self.input_types)

    def default_predict_fn(self, data, model, context: RequestContext):
        if self.predictor is None:
            return model.predict(data)
        if isinstance(data, codecs.KeyedRecords):
            raise BadRequest(
                "this container received keyed records (SAGEMAKER_INFERENCE_INPUT) but its model takes "
                "feature arrays; define predict_fn in code/inference.py"
            )
        records = np.asarray(data, dtype=np.float64)
        self.check_records(records)
        return self.predictor.predict(records)

    def default_output_fn(self, prediction, accept: str, context: RequestContext):
        return codecs.encode(prediction, accept, context.inference_keys)

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

    def invoke(
        self,
        body: bytes,
        content_type: str | None,
        accept: str | None,
        custom_attributes: str | None = None,
        inference_id: str | None = None,
    ) -> tuple[bytes, str]:
        """Answer one /invocations request: (body, content type). Raises HttpError for client errors."""
        response_type = codecs.negotiate(accept, self.config.default_accept)
        keys = self.output_keys
        if custom_attributes:
            requested = keys_from_custom_attributes(custom_attributes)
            if requested is not None:
                if self.allowed_keys is not None and not set(requested) <= set(self.allowed_keys):
                    raise BadRequest(
                        f"inference_output {','.join(requested)}: this {self._model_kind()} supports "
                        f"{', '.join(self.allowed_keys)}"
                    )
                keys = requested
        if not content_type:
            raise UnsupportedMediaType(f"Content-Type header is missing; send one of {', '.join(self.input_types)}")
        request_type = codecs.media_type(content_type)
        context = RequestContext(request_type, response_type, keys, custom_attributes, inference_id)
        try:
            if self._transform_fn:
                result = self._transform_fn(self.model, body, request_type, response_type, context)
            else:
                data = self._input_fn(body, request_type, context)
                prediction = self._predict_fn(data, self.model, context)
                result = self._output_fn(prediction, response_type, context)
        except InvalidInput as exc:
            raise BadRequest(str(exc)) from None
        except HttpError:
            raise
        if isinstance(result, tuple):
            result, response_type = result
        if isinstance(result, str):
            result = result.encode()
        return result, response_type
