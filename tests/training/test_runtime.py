"""The in-image training runtime: SageMaker's training layout in, a servable model (or one clear reason) out.

Jobs run in-process on the bundled Abalone data, written as SageMaker's built-ins expect it: CSV without a
header, the label first. Each trained model is compared with the same model fitted directly.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from modelcrate.predictors import ModelMetadata, load_predictor
from modelcrate.predictors.trust import file_sha256
from modelcrate.scaffold.sample_models import abalone_dataset
from modelcrate.training import default_spec, run_training
from modelcrate.training.data import read_channel
from modelcrate.training.errors import JobError

TRAIN = str(Path(sys.executable).with_name("train"))
SMALL = {"sklearn": {"n_estimators": "8", "seed": "7"}, "xgboost": {"num_round": "8", "seed": "7"}}
CASES = [(framework, task) for framework in ("sklearn", "xgboost") for task in ("regression", "classification")]


def csv_text(labels: np.ndarray, features: np.ndarray) -> str:
    # repr() round-trips every float, so the job trains on exactly the arrays the direct fits use.
    return "".join(
        ",".join(repr(float(v)) for v in (label, *row)) + "\n" for label, row in zip(labels, features, strict=True)
    )


@pytest.fixture(scope="module")
def abalone_channels(tmp_path_factory):
    """``abalone_channels(task)`` -> the directory holding train/ and validation/ channels for the task."""
    root = tmp_path_factory.mktemp("abalone")
    for task in ("regression", "classification"):
        data = abalone_dataset(task)
        for channel, labels, features in (
            ("train", data.y_train, data.x_train),
            ("validation", data.y_test, data.x_test),
        ):
            (root / task / channel).mkdir(parents=True)
            (root / task / channel / "abalone.csv").write_text(csv_text(labels, features))
    return lambda task: root / task


class Job:
    """One job's SageMaker layout under a temporary prefix, with the project's training.json beside it."""

    def __init__(self, root: Path, framework: str, task: str, channels: Path):
        self.prefix, self.framework, self.task = root / "ml", framework, task
        root.mkdir(parents=True, exist_ok=True)
        self.spec_path = root / "training.json"
        self.spec_path.write_text(json.dumps(default_spec(framework, task)))
        self.config = self.prefix / "input" / "config"
        self.config.mkdir(parents=True)
        self.data = self.prefix / "input" / "data"
        for channel in ("train", "validation"):
            shutil.copytree(channels / channel, self.data / channel)
        self.model_dir = self.prefix / "model"

    def configure(self, name: str, content) -> None:
        (self.config / name).write_text(json.dumps(content))

    def run(self, hyperparameters: dict | None = None) -> int:
        self.configure("hyperparameters.json", hyperparameters if hyperparameters is not None else {})
        return run_training(self.prefix, self.spec_path)

    @property
    def failure(self) -> str:
        return (self.prefix / "output" / "failure").read_text()


@pytest.fixture
def job(tmp_path, abalone_channels):
    """``job(framework, task)`` -> a Job with Abalone train and validation channels."""
    numbers = itertools.count()
    return lambda framework, task: Job(tmp_path / f"job{next(numbers)}", framework, task, abalone_channels(task))


def direct_fit(framework: str, task: str, data, rounds: int = 8):
    """The model the runtime should have trained with SMALL's hyperparameters, fitted without it."""
    if framework == "sklearn":
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        if task == "regression":
            return RandomForestRegressor(n_estimators=8, max_features=None, random_state=7, n_jobs=1).fit(
                data.x_train, data.y_train
            )
        return RandomForestClassifier(n_estimators=8, random_state=7, n_jobs=1).fit(data.x_train, data.y_train)
    import xgboost

    params = {"tree_method": "hist", "seed": 7, "objective": "reg:squarederror"}
    if task == "classification":
        params.update(objective="multi:softprob", num_class=3)
    return xgboost.train(params, xgboost.DMatrix(data.x_train, label=data.y_train), num_boost_round=rounds)


@pytest.mark.parametrize("framework,task", CASES, ids=["-".join(c) for c in CASES])
def test_a_job_trains_the_model_a_direct_fit_gives_and_records_it(job, framework, task):
    trained = job(framework, task)
    assert trained.run(SMALL[framework]) == 0
    assert not (trained.prefix / "output" / "failure").exists()
    model_file = "model.joblib" if framework == "sklearn" else "model.json"
    assert sorted(p.name for p in trained.model_dir.iterdir()) == sorted([model_file, "modelcrate.json"])

    data = abalone_dataset(task)
    served = load_predictor(trained.model_dir).predict(data.x_test)
    direct = direct_fit(framework, task, data)
    if framework == "sklearn" and task == "regression":
        np.testing.assert_array_equal(served.values, direct.predict(data.x_test))
    elif framework == "sklearn":
        np.testing.assert_array_equal(served.probabilities, direct.predict_proba(data.x_test))
        np.testing.assert_array_equal(served.values, direct.predict(data.x_test))
    else:
        np.testing.assert_array_equal(
            served.probabilities if task == "classification" else served.values, direct.inplace_predict(data.x_test)
        )

    metadata = ModelMetadata.read(trained.model_dir)
    assert (metadata.framework, metadata.task) == (framework, task)
    assert metadata.model_format == ("joblib" if framework == "sklearn" else "json")
    assert metadata.framework_version == ("1.7.1" if framework == "sklearn" else "2.1.3")
    assert metadata.sha256_of_files == {model_file: file_sha256(trained.model_dir / model_file)}
    assert metadata.feature_names == [f"f{i}" for i in range(1, data.x_test.shape[1] + 1)]
    assert metadata.labels == ([0, 1, 2] if task == "classification" else None)
    names = ["rmse", "mae", "r2"] if task == "regression" else ["accuracy", "log_loss"]
    assert list(metadata.metrics) == [f"{channel}:{name}" for channel in ("train", "validation") for name in names]
    # The samples are validation rows with what the served model answers for them.
    assert [s["input"] for s in metadata.samples] == data.x_test[:5].tolist()
    if task == "regression":
        assert [s["expected"]["prediction"] for s in metadata.samples] == served.values[:5].tolist()
    else:
        assert [s["expected"]["predicted_label"] for s in metadata.samples] == served.values[:5].tolist()
        assert [s["expected"]["probabilities"] for s in metadata.samples] == served.probabilities[:5].tolist()


def test_string_hyperparameters_are_typed_and_sagemakers_own_are_ignored(job):
    trained = job("sklearn", "classification")
    given = {
        "n_estimators": "5",
        "max_depth": "3",
        "bootstrap": "False",
        "max_features": "log2",
        "criterion": "entropy",
        "sagemaker_program": "train.py",
        "sagemaker_region": "us-east-1",
        "_tuning_objective_metric": "validation:accuracy",
    }
    assert trained.run(given) == 0
    import joblib

    forest = joblib.load(trained.model_dir / "model.joblib")
    assert (forest.n_estimators, forest.max_depth, forest.bootstrap) == (5, 3, False)
    assert (forest.max_features, forest.criterion, forest.random_state) == ("log2", "entropy", 0)


def test_local_json_numbers_and_booleans_are_taken_as_they_are(job):
    forest_job, boosted_job = job("sklearn", "regression"), job("xgboost", "regression")
    assert forest_job.run({"n_estimators": 4, "bootstrap": False, "max_depth": 3}) == 0
    import joblib

    forest = joblib.load(forest_job.model_dir / "model.joblib")
    assert (forest.n_estimators, forest.bootstrap, forest.max_depth) == (4, False, 3)

    assert boosted_job.run({"num_round": 4, "eta": 0.5, "max_depth": 2, "seed": 3}) == 0
    import xgboost

    data = abalone_dataset("regression")
    params = {"tree_method": "hist", "eta": 0.5, "max_depth": 2, "seed": 3}
    direct = xgboost.train(params, xgboost.DMatrix(data.x_train, label=data.y_train), num_boost_round=4)
    served = load_predictor(boosted_job.model_dir).predict(data.x_test).values
    np.testing.assert_array_equal(served, direct.inplace_predict(data.x_test))


def test_early_stopping_keeps_the_rounds_up_to_the_best(job):
    trained = job("xgboost", "regression")
    assert trained.run({"num_round": "200", "eta": "0.5", "early_stopping_rounds": "3", "seed": "7"}) == 0
    import xgboost

    kept = xgboost.Booster(model_file=str(trained.model_dir / "model.json")).num_boosted_rounds()
    assert kept < 200
    data = abalone_dataset("regression")
    params = {"tree_method": "hist", "seed": 7, "eta": 0.5}
    direct = xgboost.train(params, xgboost.DMatrix(data.x_train, label=data.y_train), num_boost_round=kept)
    # The best round is the one with the lowest validation rmse: one more round or one fewer does worse.
    served = load_predictor(trained.model_dir).predict(data.x_test).values
    np.testing.assert_array_equal(served, direct.inplace_predict(data.x_test))
    rmse = ModelMetadata.read(trained.model_dir).metrics["validation:rmse"]
    longer = xgboost.train(params, xgboost.DMatrix(data.x_train, label=data.y_train), num_boost_round=kept + 1)
    assert np.sqrt(((longer.inplace_predict(data.x_test) - data.y_test) ** 2).mean()) >= rmse - 1e-6


def write_rows(path: Path, rows: list[str]) -> None:
    path.write_text("".join(row + "\n" for row in rows))


def bad_cell(trained: Job) -> None:
    rows = (trained.data / "train" / "abalone.csv").read_text().splitlines()
    fields = rows[2].split(",")
    fields[3] = "abc"
    rows[2] = ",".join(fields)
    write_rows(trained.data / "train" / "abalone.csv", rows)


def header_row(trained: Job) -> None:
    path = trained.data / "train" / "abalone.csv"
    path.write_text("rings,sex_F,sex_I,sex_M,length,diameter,height,whole,shucked,viscera,shell\n" + path.read_text())


def ragged_row(trained: Job) -> None:
    write_rows(trained.data / "train" / "more.csv", ["1,2,3"])


def replace_cell(row: int, column: int, value: str):
    """A change to a job: the train channel's ``row`` (1 = first) gets ``value`` in ``column`` (1 = first)."""

    def change(trained: Job) -> None:
        rows = (trained.data / "train" / "abalone.csv").read_text().splitlines()
        fields = rows[row - 1].split(",")
        fields[column - 1] = value
        rows[row - 1] = ",".join(fields)
        write_rows(trained.data / "train" / "abalone.csv", rows)

    return change


def short_row(trained: Job) -> None:
    rows = (trained.data / "train" / "abalone.csv").read_text().splitlines()
    rows[9] = rows[9][: rows[9].rindex(",")]
    write_rows(trained.data / "train" / "abalone.csv", rows)


def only_file(content: str):
    """A change to a job: the train channel holds one file, ``content``."""

    def change(trained: Job) -> None:
        shutil.rmtree(trained.data / "train")
        (trained.data / "train").mkdir()
        (trained.data / "train" / "data.csv").write_text(content)

    return change


def label_only(trained: Job) -> None:
    only_file("1\n2\n3\n")(trained)
    shutil.rmtree(trained.data / "validation")


def empty_channel(trained: Job) -> None:
    shutil.rmtree(trained.data / "train")
    (trained.data / "train").mkdir()
    (trained.data / "train" / ".hidden").write_text("1,2,3\n")


FAILURES = {
    "unknown name": ({"n_trees": "10"}, None, 'unknown hyperparameter n_trees="10": this sklearn regression training'),
    "wrong type": (
        {"max_depth": "deep"},
        None,
        'hyperparameter max_depth="deep" is not a whole number; give a whole number from 0 to 1000',
    ),
    "out of range": ({"n_estimators": "0"}, None, 'hyperparameter n_estimators="0" is out of range'),
    "bad boolean": ({"bootstrap": "yes"}, None, 'hyperparameter bootstrap="yes" is not true or false'),
    "bad choice": (
        {"criterion": "best"},
        None,
        "hyperparameter criterion=\"best\" is not a choice; give one of 'squared_error', 'absolute_error'",
    ),
    "missing train channel": (
        {},
        lambda t: shutil.rmtree(t.data / "train"),
        "no train channel: {prefix}/input/data/train does not exist",
    ),
    "unsupported content type": (
        {},
        lambda t: t.configure("inputdataconfig.json", {"train": {"ContentType": "application/x-parquet"}}),
        "channel 'train' has ContentType 'application/x-parquet'; this algorithm reads text/csv only",
    ),
    "content type not text": (
        {},
        lambda t: t.configure("inputdataconfig.json", {"train": {"ContentType": 5}}),
        "channel 'train' has ContentType 5; this algorithm reads text/csv only",
    ),
    "hosts not a list": (
        {},
        lambda t: t.configure("resourceconfig.json", {"current_host": "algo-1", "hosts": 5}),
        "resourceconfig.json is not a JSON object with a list of hosts",
    ),
    "pipe mode": (
        {},
        lambda t: t.configure("inputdataconfig.json", {"train": {"TrainingInputMode": "Pipe"}}),
        "channel 'train' uses TrainingInputMode 'Pipe'; this algorithm reads files: use File input mode",
    ),
    "declared channel missing": (
        {},
        lambda t: t.configure("inputdataconfig.json", {"train": {}, "validation": {}, "extra": {}}),
        "channel 'extra' is not one this algorithm reads",
    ),
    "bad CSV cell": (
        {},
        bad_cell,
        "{prefix}/input/data/train/abalone.csv line 3 column 4: 'abc' is not a finite number",
    ),
    "header row": ({}, header_row, "line 1 column 1: 'rings' is not a finite number (CSV files have no header row)"),
    "ragged row": (
        {},
        ragged_row,
        "more.csv line 1 has 3 fields but {prefix}/input/data/train/abalone.csv line 1 has 11",
    ),
    "empty channel": ({}, empty_channel, "channel 'train' has no data rows in {prefix}/input/data/train"),
    "empty file": ({}, only_file(""), "channel 'train' has no data rows in {prefix}/input/data/train"),
    "blank lines only": ({}, only_file("\n  \n\r\n"), "channel 'train' has no data rows in {prefix}/input/data/train"),
    "label only": (
        {},
        label_only,
        "data.csv line 1 has one field, the label; channel 'train' needs at least one feature column besides the label",
    ),
    "short row": ({}, short_row, "abalone.csv line 10 has 10 fields but {prefix}/input/data/train/abalone.csv line 1"),
    "infinite label": ({}, replace_cell(3, 1, "inf"), "abalone.csv line 3 column 1: 'inf' is not a finite number"),
    "missing label": ({}, replace_cell(5, 1, "nan"), "abalone.csv line 5 column 1: 'nan' is not a finite number"),
    "number beyond float64": (
        {},
        replace_cell(4, 5, "1e400"),
        "abalone.csv line 4 column 5: '1e400' is not a finite number; every field must be numeric",
    ),
    "empty field": ({}, replace_cell(7, 2, ""), "abalone.csv line 7 column 2: '' is not a finite number"),
    "several hosts": (
        {},
        lambda t: t.configure("resourceconfig.json", {"current_host": "algo-1", "hosts": ["algo-1", "algo-2"]}),
        "lists 2 hosts (algo-1, algo-2); this algorithm trains on one machine and does not support distributed",
    ),
    "model directory in use": (
        {},
        lambda t: (t.model_dir.mkdir(), (t.model_dir / "model.pkl").write_text("old")),
        "{prefix}/model already holds model.pkl; training writes a new model into an empty directory",
    ),
}


@pytest.mark.parametrize("case", FAILURES)
def test_a_bad_job_fails_with_one_reason_and_leaves_no_model(job, capsys, case):
    hyperparameters, prepare, reason = FAILURES[case]
    trained = job("sklearn", "regression")
    if prepare:
        prepare(trained)
    before = sorted(trained.model_dir.iterdir()) if trained.model_dir.exists() else []
    assert trained.run(hyperparameters) == 1
    expected = reason.format(prefix=trained.prefix)
    assert expected in trained.failure
    assert len(trained.failure.strip().splitlines()) == 1
    assert expected in capsys.readouterr().err
    after = sorted(trained.model_dir.iterdir()) if trained.model_dir.exists() else []
    assert after == before  # nothing new, not even a hidden staging directory


def test_xgboost_class_labels_must_be_whole_numbers_from_zero(job):
    trained = job("xgboost", "classification")
    rows = (trained.data / "train" / "abalone.csv").read_text().splitlines()
    rows[0] = "-1" + rows[0][rows[0].index(",") :]
    write_rows(trained.data / "train" / "abalone.csv", rows)
    assert trained.run(SMALL["xgboost"]) == 1
    assert (
        "the train channel's label column holds -1; XGBoost classification needs class labels 0, 1" in trained.failure
    )


@pytest.mark.parametrize(
    "framework,label,reason",
    [
        (
            "sklearn",
            "0.5",
            "the train channel's label column holds 0.5; classification needs class labels that are whole",
        ),
        ("sklearn", "1e300", "the train channel's label column holds 1e+300; classification needs class labels"),
        ("xgboost", "5000000000", "the train channel's largest class label is 5e+09 but it has 3341 rows; XGBoost"),
    ],
)
def test_class_labels_no_classifier_can_learn_are_the_jobs_error(job, framework, label, reason):
    trained = job(framework, "classification")
    replace_cell(1, 1, label)(trained)
    assert trained.run(SMALL[framework]) == 1
    assert reason in trained.failure


def test_binary_logistic_needs_two_classes(job):
    trained = job("xgboost", "classification")
    assert trained.run({**SMALL["xgboost"], "objective": "binary:logistic"}) == 1
    assert "objective=binary:logistic needs labels 0 and 1 but the train channel has 0, 1, 2" in trained.failure


def test_a_failure_inside_the_framework_is_an_internal_error_and_leaves_no_model(job, capsys):
    trained = job("xgboost", "regression")
    spec = json.loads(trained.spec_path.read_text())
    spec["hyperparameters"]["objective"]["choices"].append("reg:unheard-of")  # the spec allows what XGBoost refuses
    trained.spec_path.write_text(json.dumps(spec))
    assert trained.run({"objective": "reg:unheard-of"}) == 2
    assert trained.failure.startswith("internal error while training: XGBoostError")
    assert len(trained.failure.strip().splitlines()) == 1
    assert "Traceback" in capsys.readouterr().err
    assert list(trained.model_dir.iterdir()) == []


def test_a_broken_spec_is_named(job):
    trained = job("sklearn", "regression")
    spec = json.loads(trained.spec_path.read_text())
    spec["hyperparameters"]["n_estimators"]["default"] = 0
    trained.spec_path.write_text(json.dumps(spec))
    assert trained.run({}) == 1
    assert f"the training spec {trained.spec_path} has a default its own declaration refuses" in trained.failure


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_metric_definitions_scrape_the_printed_metrics(job, capsys, task):
    trained = job("xgboost", task)
    assert trained.run(SMALL["xgboost"]) == 0
    log = capsys.readouterr().out
    assert log.startswith("modelcrate training: xgboost")
    assert "channels: train 3341 rows, validation 836 rows; " in log
    recorded = ModelMetadata.read(trained.model_dir).metrics
    scraped = {}
    for definition in default_spec("xgboost", task)["metric_definitions"]:
        for line in log.splitlines():
            match = re.search(definition["Regex"], line)
            if match:
                scraped[definition["Name"]] = float(match.group(1))
    assert scraped == recorded


def test_the_train_command_trains_and_serve_answers_what_was_recorded(tmp_path, abalone_channels, start_server):
    trained = Job(tmp_path, "sklearn", "classification", abalone_channels("classification"))
    trained.configure("hyperparameters.json", SMALL["sklearn"])
    trained.configure(
        "inputdataconfig.json",
        {name: {"ContentType": "text/csv", "TrainingInputMode": "File"} for name in ("train", "validation")},
    )
    trained.configure("resourceconfig.json", {"current_host": "algo-1", "hosts": ["algo-1"]})
    env = {
        **os.environ,
        "MODELCRATE_ML_PREFIX": str(trained.prefix),
        "MODELCRATE_TRAINING_SPEC": str(trained.spec_path),
    }
    done = subprocess.run([TRAIN], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "on host algo-1" in done.stdout and "validation:accuracy=" in done.stdout

    samples = ModelMetadata.read(trained.model_dir).samples
    records = np.array([s["input"] for s in samples])
    npy = io.BytesIO()
    np.save(npy, records)
    server = start_server(trained.model_dir)
    answer = server.invoke(npy.getvalue(), "application/x-npy", "application/json")
    assert answer.status == 200, answer.text
    assert json.loads(answer.body)["predictions"] == [s["expected"]["predicted_label"] for s in samples]

    (trained.model_dir / "model.joblib").unlink()
    (trained.model_dir / "modelcrate.json").unlink()
    trained.configure("hyperparameters.json", {"n_estimators": "many"})
    failed = subprocess.run([TRAIN], env=env, capture_output=True, text=True, timeout=300)
    assert failed.returncode == 1
    assert 'hyperparameter n_estimators="many" is not a whole number' in failed.stderr
    assert list(trained.model_dir.iterdir()) == []


def test_the_spec_can_move_the_label_and_name_the_features(tmp_path, abalone_channels):
    trained = Job(tmp_path, "sklearn", "regression", abalone_channels("regression"))
    data = abalone_dataset("regression")
    for channel, labels, features in (("train", data.y_train, data.x_train), ("validation", data.y_test, data.x_test)):
        rows = csv_text(labels, features).splitlines()
        # The label last: each row's first field moves to the end.
        write_rows(
            trained.data / channel / "abalone.csv", [",".join([*r.split(",")[1:], r.split(",")[0]]) for r in rows]
        )
    spec = json.loads(trained.spec_path.read_text())
    spec.update(label_column=10, feature_names=data.feature_names)
    trained.spec_path.write_text(json.dumps(spec))
    assert trained.run(SMALL["sklearn"]) == 0
    metadata = ModelMetadata.read(trained.model_dir)
    assert metadata.feature_names == data.feature_names
    served = load_predictor(trained.model_dir).predict(data.x_test)
    np.testing.assert_array_equal(served.values, direct_fit("sklearn", "regression", data).predict(data.x_test))


def test_a_missing_spec_says_how_to_get_one(job):
    trained = job("xgboost", "regression")
    trained.spec_path.unlink()
    assert trained.run({}) == 1
    assert f"no training spec at {trained.spec_path}: this image was not generated with" in trained.failure


def test_a_channel_of_many_blocks_reads_every_row_and_names_lines_past_the_first_block(tmp_path):
    """Channels are parsed a block of text at a time; rows, values and line numbers are those of the whole file."""
    rows = 400_000  # about 9 MB: more than two blocks
    directory = tmp_path / "train"
    directory.mkdir()
    lines = [f"{i},{i / 7!r},{-i}" for i in range(rows)]
    lines[123_456] = "123456,1_7,-123456"  # Python reads digit separators; numpy's parser does not
    for i in range(0, rows, 1000):
        lines[i] += "\r\n"  # Windows line ends and blank lines in places
    (directory / "a.csv").write_text("\n".join(lines[:250_000]) + "\n")
    (directory / "b.csv").write_text("\n".join(lines[250_000:]))  # no line end at the end

    channel = read_channel("train", directory, 0)
    assert channel.features.flags.c_contiguous and channel.features.dtype == np.float64
    np.testing.assert_array_equal(channel.labels, np.arange(rows, dtype=np.float64))
    expected = np.column_stack([np.arange(rows) / 7, -np.arange(rows, dtype=np.float64)])
    expected[123_456, 0] = 17.0
    np.testing.assert_array_equal(channel.features, expected)

    # b.csv holds rows from 250,000 on: row 300,000 is past its first block, after 50 blank lines.
    text = (directory / "b.csv").read_text().split("\n")
    line = text.index("300000," + repr(300_000 / 7) + ",-300000") + 1
    text[line - 1] = "300000,oops,-300000"
    (directory / "b.csv").write_text("\n".join(text))
    with pytest.raises(JobError, match=f"b.csv line {line} column 2: 'oops' is not a finite number"):
        read_channel("train", directory, 0)
