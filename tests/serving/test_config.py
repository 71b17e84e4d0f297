"""Reading SageMaker's environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelcrate.predictors.trust import ACCEPT_MISMATCH_VARIABLE
from modelcrate.serving import config as config_module
from modelcrate.serving.config import ServingConfig
from modelcrate.serving.errors import BadRequest, ConfigError
from modelcrate.serving.service import keys_from_custom_attributes


def test_defaults():
    config = ServingConfig.from_env({})
    assert config.port == 8080 and config.timeout == 60 and config.default_accept == "application/json"
    assert config.model_dir == Path("/opt/ml/model") and config.code_dir == Path("/opt/ml/model/code")
    assert config.max_payload_bytes == 6 * 1024 * 1024 and config.log_level == 20
    assert config.execution_parameters["BatchStrategy"] == "MULTI_RECORD"
    assert not config.multi_model and config.multi_model_root == Path("/opt/ml/models")
    assert config.max_loaded_models is None and config.min_free_memory_mb == 256
    assert (config.max_url_bytes, config.max_headers, config.max_header_bytes) == (8192, 100, 16384)
    assert (config.keep_alive_timeout, config.header_timeout, config.body_timeout) == (75, 20, 60)
    assert config.max_connections == 1000
    assert config.drain_timeout == 25  # within SageMaker's 30 s from SIGTERM to SIGKILL


def test_every_variable_is_read():
    config = ServingConfig.from_env(
        {
            "SAGEMAKER_BIND_TO_PORT": "9000",
            "SAGEMAKER_MODEL_SERVER_WORKERS": "3",
            "SAGEMAKER_MODEL_SERVER_TIMEOUT": "2.5",
            "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv",
            "SAGEMAKER_MAX_PAYLOAD_IN_MB": "20",
            "SAGEMAKER_CONTAINER_LOG_LEVEL": "10",
            "SAGEMAKER_PROGRAM": "handler.py",
            "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/code",
            "SAGEMAKER_BATCH": "true",
            "SAGEMAKER_BATCH_STRATEGY": "SingleRecord",
            "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "5",
            "SAGEMAKER_INFERENCE_SUPPORTED": "predicted_label,probability",
            "SAGEMAKER_INFERENCE_INPUT": "predicted_label",
            "SAGEMAKER_INFERENCE_OUTPUT": "Probability , predicted_label",
            "SAGEMAKER_MULTI_MODEL": "true",
            "MODELCRATE_MULTI_MODEL_ROOT": "/srv/models",
            "MODELCRATE_MAX_LOADED_MODELS": "20",
            "MODELCRATE_MIN_FREE_MEMORY_MB": "1024",
            "MODELCRATE_MAX_URL_BYTES": "2048",
            "MODELCRATE_MAX_HEADERS": "30",
            "MODELCRATE_MAX_HEADER_BYTES": "65536",
            "MODELCRATE_KEEP_ALIVE_TIMEOUT": "5",
            "MODELCRATE_HEADER_TIMEOUT": "2.5",
            "MODELCRATE_BODY_TIMEOUT": "30",
            "MODELCRATE_MAX_CONNECTIONS": "200",
            "MODELCRATE_DRAIN_TIMEOUT": "2",
            ACCEPT_MISMATCH_VARIABLE: "true",
        }
    )
    assert (config.port, config.workers, config.timeout, config.default_accept) == (9000, 3, 2.5, "text/csv")
    assert config.max_payload_bytes == 20 * 1024 * 1024 and config.log_level == 10
    assert config.code_dir == Path("/opt/code") and config.program == "handler.py" and config.batch
    assert config.execution_parameters == {
        "MaxConcurrentTransforms": 5,
        "BatchStrategy": "SINGLE_RECORD",
        "MaxPayloadInMB": 20,
    }
    assert config.inference_output == ("probability", "predicted_label")
    assert config.inference_input == ("predicted_label",)
    assert config.multi_model and config.multi_model_root == Path("/srv/models")
    assert (config.max_loaded_models, config.min_free_memory_mb) == (20, 1024)
    assert (config.max_url_bytes, config.max_headers, config.max_header_bytes) == (2048, 30, 65536)
    assert (config.keep_alive_timeout, config.header_timeout, config.body_timeout) == (5, 2.5, 30)
    assert config.max_connections == 200
    assert config.drain_timeout == 2
    assert config.accept_model_mismatch and not ServingConfig.from_env({}).accept_model_mismatch


def test_batch_jobs_may_send_up_to_100_mib_unless_they_say_how_much():
    assert ServingConfig.from_env({"SAGEMAKER_BATCH": "true"}).max_payload_bytes == 100 * 1024 * 1024
    limited = ServingConfig.from_env({"SAGEMAKER_BATCH": "true", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "8"})
    assert limited.max_payload_bytes == 8 * 1024 * 1024
    streaming = ServingConfig.from_env({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "0"})
    assert streaming.max_payload_bytes == 100 * 1024 * 1024 and streaming.execution_parameters["MaxPayloadInMB"] == 0


def test_flags_override_the_environment():
    config = ServingConfig.from_env({"SAGEMAKER_BIND_TO_PORT": "9000"}, port=9100, workers=None)
    assert config.port == 9100


def test_default_concurrency_stays_within_the_100_mb_budget():
    config = ServingConfig.from_env({"SAGEMAKER_MODEL_SERVER_WORKERS": "64", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "10"})
    assert config.execution_parameters["MaxConcurrentTransforms"] == 10


@pytest.mark.parametrize(
    "env,message",
    [
        ({"SAGEMAKER_BIND_TO_PORT": "70000"}, "out of range"),
        ({"SAGEMAKER_MODEL_SERVER_TIMEOUT": "-1"}, "must be positive"),
        ({"SAGEMAKER_BATCH_STRATEGY": "ALL"}, "use MULTI_RECORD or SINGLE_RECORD"),
        ({"SAGEMAKER_INFERENCE_INPUT": "label"}, "unknown inference key(s) label"),
        ({"MODELCRATE_MIN_FREE_MEMORY_MB": "lots"}, "MODELCRATE_MIN_FREE_MEMORY_MB='lots' is not a whole number"),
        ({"MODELCRATE_MAX_HEADER_BYTES": "100"}, "MODELCRATE_MAX_HEADER_BYTES=100 must be at least 1024"),
        ({"MODELCRATE_MAX_URL_BYTES": "0"}, "MODELCRATE_MAX_URL_BYTES=0 must be at least 64"),
        ({"MODELCRATE_MAX_HEADERS": "2"}, "MODELCRATE_MAX_HEADERS=2 must be at least 8"),
        ({"MODELCRATE_BODY_TIMEOUT": "0"}, "MODELCRATE_BODY_TIMEOUT=0 must be positive"),
        ({"MODELCRATE_MAX_CONNECTIONS": "1"}, "MODELCRATE_MAX_CONNECTIONS=1 must be at least 16"),
        ({"MODELCRATE_DRAIN_TIMEOUT": "soon"}, "MODELCRATE_DRAIN_TIMEOUT='soon' is not a number of seconds"),
    ],
)
def test_bad_values_are_named(env, message):
    with pytest.raises(ConfigError) as err:
        ServingConfig.from_env(env)
    assert message in str(err.value)


def test_custom_attributes_choose_keys():
    assert keys_from_custom_attributes("inference_output=predicted_label, probabilities") == (
        "predicted_label",
        "probabilities",
    )
    assert keys_from_custom_attributes("trace-id=7;Inference-Output=labels") == ("labels",)
    assert keys_from_custom_attributes("something else") is None
    with pytest.raises(BadRequest, match="unknown inference key"):
        keys_from_custom_attributes("inference_output=nonsense")


@pytest.mark.parametrize("marker", [".dockerenv", "run/.containerenv"])
def test_a_container_is_told_by_its_engine_marker(tmp_path, marker):
    assert not config_module.in_container(tmp_path)
    (tmp_path / marker).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / marker).touch()
    assert config_module.in_container(tmp_path)


@pytest.mark.parametrize("inside,host", [(True, "0.0.0.0"), (False, "127.0.0.1")])
def test_the_bind_host_is_every_address_only_in_a_container(monkeypatch, inside, host):
    monkeypatch.setattr(config_module, "in_container", lambda root=None: inside)
    assert ServingConfig.from_env({}).host == host
    assert ServingConfig.from_env({"MODELCRATE_BIND_HOST": "10.0.0.7"}).host == "10.0.0.7"


def test_a_worker_count_below_one_from_a_flag_is_refused():
    with pytest.raises(ConfigError, match="0 workers would serve nothing: ask for at least 1"):
        ServingConfig.from_env({}, workers=0)
