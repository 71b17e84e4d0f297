"""The BentoML service of benchmarks/peers.py: one ``predict`` endpoint over a model from BentoML's store.

    BENTOML_HOME=... PEER_BENTOML_MODEL=abalone-sklearn PEER_WORKERS=2 \\
        bentoml serve peer_bentoml_service:AbaloneRegressor --host 127.0.0.1 --port 8080

The model was saved with ``bentoml.sklearn.save_model`` or ``bentoml.xgboost.save_model`` (peer_models.py)
and is loaded back with the same flavour. The request is BentoML's JSON: ``{"rows": [[...], ...]}``.
"""

from __future__ import annotations

import os

import bentoml
import numpy as np

MODEL_NAME = os.environ["PEER_BENTOML_MODEL"]


# No access log: the other servers of the benchmark write no line per request either.
@bentoml.service(workers=int(os.environ["PEER_WORKERS"]), logging={"access": {"enabled": False}})
class AbaloneRegressor:
    def __init__(self) -> None:
        stored = bentoml.models.get(MODEL_NAME)
        flavour = bentoml.xgboost if stored.info.module == "bentoml.xgboost" else bentoml.sklearn
        self.model = flavour.load_model(stored)

    @bentoml.api
    def predict(self, rows: np.ndarray) -> np.ndarray:
        return self.model.predict(rows)
