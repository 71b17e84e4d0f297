"""The baseline of benchmarks/serving.py: the classic bring-your-own-container model server.

Flask under gunicorn's sync workers, the model loaded once at import, the CSV body read with pandas,
JSON out: what a team writes by hand when it packages a model for SageMaker itself. It is deliberately
plain, and not part of modelcrate.

    BASELINE_MODEL_PATH=/path/model.joblib gunicorn -w 2 --chdir benchmarks baseline_flask_app:app

A ``.json`` path is an XGBoost model, loaded with the scikit-learn API (``XGBRegressor.load_model``) as
it was trained; anything else is unpickled with joblib.
"""

from __future__ import annotations

import io
import os

import flask
import pandas as pd


def load_model(path: str):
    if path.endswith(".json"):
        import xgboost

        model = xgboost.XGBRegressor()
        model.load_model(path)
        return model
    import joblib

    return joblib.load(path)


model = load_model(os.environ["BASELINE_MODEL_PATH"])
app = flask.Flask(__name__)


@app.get("/ping")
def ping():
    return flask.Response(status=200)


@app.post("/invocations")
def invocations():
    if flask.request.mimetype != "text/csv":
        return flask.Response("send text/csv\n", status=415, mimetype="text/plain")
    frame = pd.read_csv(io.StringIO(flask.request.get_data(as_text=True)), header=None)
    # The frame's column names are 0..n-1, not the names the model was trained with: predict its values.
    predictions = model.predict(frame.to_numpy())
    return flask.jsonify(predictions=predictions.tolist())
