"""Runs SageMaker Python SDK local-mode jobs; executed by the SDK's own virtualenv's python, not by pytest.

    python driver.py SPEC.json RESULT.json

SPEC holds {"jobs": [...]}, each one of
  {"kind": "deploy", "image", "model_data", "rows"}: Model.deploy(instance_type="local"), then Predictor.predict
      of ROWS with the CSV and then the JSON serializer and deserializer, then delete_endpoint;
  {"kind": "transform", "image", "model_data", "input", "output", "strategy", "assemble_with"}:
      Transformer.transform of the file:// INPUT directory, text/csv split by Line; STRATEGY null leaves it to the
      SDK, which then asks the container's /execution-parameters;
  {"kind": "fit", "image", "channels", "output", "hyperparameters", "rows"}: Estimator(instance_type="local").fit,
      then the estimator's own deploy and a CSV predict of ROWS.
Every deploy and transform passes wait=False: local mode returns from creating an endpoint once its container
answers /ping, and from creating a transform job once the job is done (raising what failed it); waiting would
only sleep (30 s per endpoint, 5 s per job, the SDK's polls) and then read local mode's in-process record.
RESULT gets {"jobs": [one result per job, with "error" (a traceback) if it raised], "refused": [...]}: every
network address outside loopback the SDK tried to reach, refused before it was reached (see audit).
"""

import ipaddress
import json
import os
import socket
import sys
import traceback
from pathlib import Path

ROLE = "arn:aws:iam::111111111111:role/modelcrate-sdk-local"  # local mode never assumes it, but requires one
refused: list[str] = []


def loopback(host) -> bool:
    if host is None or host == "localhost":
        return True
    if isinstance(host, bytes):
        host = host.decode()
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False  # any other name would be resolved and reached


def audit(event: str, args: tuple) -> None:
    """Refuses, and records, every name lookup and connection outside loopback; unix sockets (the Docker daemon)
    pass. An exception raised here aborts the call, so nothing leaves the machine."""
    if event == "socket.getaddrinfo":
        target = args[0]
    elif event == "socket.connect":
        sock, address = args
        if sock.family == socket.AF_UNIX:
            return
        target = address[0]
    else:
        return
    if not loopback(target):
        refused.append(f"{event} {target!r}")
        raise PermissionError(f"the SDK driver allows loopback only, refused {event} to {target!r}")


def predictions(predictor, rows: list, serializer, deserializer) -> dict:
    predictor.serializer, predictor.deserializer = serializer, deserializer
    return {"body": serializer.serialize(rows), "answer": predictor.predict(rows)}


def deploy(job: dict, session) -> dict:
    from sagemaker.deserializers import CSVDeserializer, JSONDeserializer
    from sagemaker.model import Model
    from sagemaker.predictor import Predictor
    from sagemaker.serializers import CSVSerializer, JSONSerializer

    model = Model(
        image_uri=job["image"], model_data=job["model_data"], role=ROLE, sagemaker_session=session,
        predictor_cls=Predictor,
    )  # fmt: skip
    predictor = model.deploy(initial_instance_count=1, instance_type="local", wait=False)
    try:
        return {
            "csv": predictions(predictor, job["rows"], CSVSerializer(), CSVDeserializer()),
            "json": predictions(predictor, job["rows"], JSONSerializer(), JSONDeserializer()),
        }
    finally:
        predictor.delete_endpoint()
        model.delete_model()


def transform(job: dict, session) -> dict:
    from sagemaker.local.local_session import LocalSagemakerClient
    from sagemaker.model import Model

    model = Model(image_uri=job["image"], model_data=job["model_data"], role=ROLE, sagemaker_session=session)
    transformer = model.transformer(
        instance_count=1, instance_type="local", strategy=job["strategy"], assemble_with=job["assemble_with"],
        output_path=f"file://{job['output']}", accept="text/csv",
    )  # fmt: skip
    try:
        # Local mode runs the job within transform(); its logs would be read from CloudWatch.
        transformer.transform(
            data=f"file://{job['input']}", content_type="text/csv", split_type="Line", logs=False, wait=False
        )
        described = session.sagemaker_client.describe_transform_job(transformer.latest_transform_job.name)
        return {"batch_strategy": described["BatchStrategy"]}
    except Exception:
        # A job that fails once its container is up leaves it serving on the port the next job uses.
        failed = LocalSagemakerClient._transform_jobs.get(transformer._current_job_name)
        if failed is not None and failed.container is not None and failed.state != failed._COMPLETED:
            failed.container.stop_serving()
        raise
    finally:
        model.delete_model()


def fit(job: dict, session) -> dict:
    from sagemaker.deserializers import CSVDeserializer
    from sagemaker.estimator import Estimator
    from sagemaker.predictor import Predictor
    from sagemaker.serializers import CSVSerializer

    estimator = Estimator(
        image_uri=job["image"], role=ROLE, instance_count=1, instance_type="local", sagemaker_session=session,
        output_path=f"file://{job['output']}", hyperparameters=job["hyperparameters"],
    )  # fmt: skip
    estimator.fit({name: f"file://{path}" for name, path in job["channels"].items()})
    predictor = estimator.deploy(initial_instance_count=1, instance_type="local", predictor_cls=Predictor, wait=False)
    try:
        return {
            "model_data": estimator.model_data,
            "csv": predictions(predictor, job["rows"], CSVSerializer(), CSVDeserializer()),
        }
    finally:
        predictor.delete_endpoint()  # the model the estimator registered goes with this process


JOBS = {"deploy": deploy, "transform": transform, "fit": fit}


def main(spec_path: str, result_path: str) -> None:
    sys.addaudithook(audit)
    from sagemaker.local import LocalSession

    session = LocalSession()
    results = []
    for job in json.loads(Path(spec_path).read_text())["jobs"]:
        try:
            results.append({"kind": job["kind"], **JOBS[job["kind"]](job, session)})
        except Exception:
            results.append({"kind": job["kind"], "error": traceback.format_exc()})
    Path(result_path).write_text(json.dumps({"jobs": results, "refused": refused}))
    # A job that failed after its container started leaves the SDK's (non-daemon) thread attached to it, which
    # would keep this process alive; the test removes the containers.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(*sys.argv[1:3])
