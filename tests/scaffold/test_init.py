"""`modelcrate init`: options from every source, clear refusals, and the project it writes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from modelcrate.scaffold.options import OptionsError, answer_problem, resolve

MODELCRATE = str(Path(sys.executable).with_name("modelcrate"))
BASE = {"project_name": "demo", "framework": "sklearn"}


def init(*args, cwd, env=None):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MODELCRATE_")} | (env or {})
    return subprocess.run(
        [MODELCRATE, "init", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=full_env,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )


def test_precedence_is_flags_then_environment_then_config_then_defaults(tmp_path):
    config = tmp_path / "options.yaml"
    config.write_text("region: ap-south-1\ninstance_type: ml.c5.large\nbase_image: my/python:3.11\n")
    options, origin = resolve(
        {**BASE, "region": "eu-west-1"},
        env={"MODELCRATE_REGION": "us-west-2", "MODELCRATE_INSTANCE_TYPE": "gpu"},
        config_file=config,
    )
    assert (options.region, origin["region"]) == ("eu-west-1", "flag")
    assert (options.instance_type, origin["instance_type"]) == ("ml.g5.xlarge", "environment")
    assert (options.base_image, origin["base_image"]) == ("my/python:3.11", "config file")
    assert (options.model_format, origin["model_format"]) == ("pkl", "default")


def test_print_config_shows_each_value_and_its_source(tmp_path):
    result = init(
        "demo",
        "--framework",
        "xgboost",
        "--print-config",
        "--yes",
        cwd=tmp_path,
        env={"MODELCRATE_REGION": "eu-central-1"},
    )
    assert result.returncode == 0, result.stderr
    rows = {
        line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:4]]
        for line in result.stdout.splitlines()
        if line.count("│") == 4
    }
    assert rows["framework"] == ["xgboost", "flag"]
    assert rows["region"] == ["eu-central-1", "environment"]
    assert rows["model_format"] == ["json", "default"]
    assert not (tmp_path / "demo").exists()  # it only shows


def test_json_config_files_and_their_errors(tmp_path):
    good = tmp_path / "o.json"
    good.write_text(json.dumps({"project-name": "from-file", "framework": "tensorflow"}))
    options, _ = resolve({}, env={}, config_file=good)
    assert (options.project_name, options.model_format) == ("from-file", "keras")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"framework": "sklearn", "colour": "red"}))
    with pytest.raises(OptionsError, match=r"unknown option.*colour"):
        resolve({}, env={}, config_file=bad)


def test_graviton_instances_build_arm64_images():
    assert resolve({**BASE, "instance_type": "ml.c7g.xlarge"}, env={})[0].platform == "linux/arm64"
    assert resolve({**BASE, "instance_type": "ml.m5.xlarge"}, env={})[0].platform == "linux/amd64"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--framework", "torch"], "framework: 'torch' is not allowed"),
        (["--framework", "xgboost", "--model-format", "pkl"], "'pkl' is not a xgboost format"),
        (["--framework", "sklearn", "--region", "moon-1"], "not an AWS region"),
        (["--framework", "sklearn", "--role-arn", "arn:aws:iam::12:role/x"], "not an IAM role ARN"),
        (["--framework", "sklearn", "--instance-type", "ml.huge"], "use cpu, gpu or ml.<family>.<size>"),
        (["--framework", "sklearn", "--model-source", "local", "--model-path", "nope.pkl"], "does not exist"),
        (["--framework", "sklearn", "--model-source", "local"], "model_path is needed for model_source local"),
    ],
)
def test_each_bad_option_gets_one_clear_line(tmp_path, args, message):
    result = init("demo", *args, "--yes", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert not (tmp_path / "demo").exists()


def test_a_model_file_of_another_format_is_refused(tmp_path, sample_model):
    model = sample_model("xgboost", "json", "regression") / "model.json"
    result = init(
        "demo", "--framework", "sklearn", "--model-source", "local", "--model-path", str(model), "--yes", cwd=tmp_path
    )
    assert result.returncode == 2 and "is a json model file" in result.stderr


@pytest.mark.parametrize(
    "file_name,framework,model_format",
    [
        ("iris.pkl", "sklearn", "pkl"),
        ("iris.pickle", "sklearn", "pkl"),
        ("iris.joblib", "sklearn", "joblib"),
        ("booster.json", "xgboost", "json"),
        ("booster.ubj", "xgboost", "ubj"),
        ("booster.model", "xgboost", "model"),
        ("xgboost-model", "xgboost", "model"),
        ("net.keras", "tensorflow", "keras"),
        ("net.h5", "tensorflow", "h5"),
        ("saved", "tensorflow", "savedmodel"),
    ],
)
def test_a_local_models_format_is_read_from_its_file_name(tmp_path, file_name, framework, model_format):
    model = tmp_path / file_name
    if model_format == "savedmodel":
        model.mkdir()
        (model / "saved_model.pb").touch()
    else:
        model.touch()
    options, origin = resolve({**BASE, "framework": framework, "model_source": "local", "model_path": model}, env={})
    assert (options.model_format, origin["model_format"]) == (model_format, "model file name")


def test_init_with_a_local_joblib_model_and_no_format_uses_joblib(tmp_path, sample_model, run_modelcrate, monkeypatch):
    model = tmp_path / "iris.joblib"
    shutil.copy(sample_model("sklearn", "joblib", "classification") / "model.joblib", model)
    monkeypatch.chdir(tmp_path)
    args = ("init", "iris", "--framework", "sklearn", "--model-source", "local", "--model-path", model, "--yes")
    result = run_modelcrate(*args)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "iris" / "model" / "iris.joblib").read_bytes() == model.read_bytes()
    assert json.loads((tmp_path / "iris" / "modelcrate-project.json").read_text())["model_format"] == "joblib"


def test_a_model_format_contradicting_the_model_file_is_one_clear_line(tmp_path, run_modelcrate, monkeypatch):
    model = tmp_path / "iris.joblib"
    model.touch()
    monkeypatch.chdir(tmp_path)
    args = ("--framework", "sklearn", "--model-format", "pkl", "--model-source", "local", "--model-path", model)
    result = run_modelcrate("init", "iris", *args, "--yes")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"model_format 'pkl' contradicts model_path {model}, a joblib file" in result.stderr
    assert "leave model_format out" in result.stderr and "or give joblib" in result.stderr
    assert not (tmp_path / "iris").exists()


def test_an_existing_destination_is_never_overwritten_without_force(tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "mine.txt").write_text("keep")
    result = init("demo", "--framework", "sklearn", "--yes", cwd=tmp_path)
    assert result.returncode == 2 and "exists and is not empty" in result.stderr
    assert (tmp_path / "demo" / "mine.txt").read_text() == "keep"
    forced = init("demo", "--framework", "sklearn", "--yes", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert not (tmp_path / "demo" / "mine.txt").exists()


def project_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_interactive_prompts_give_the_same_project_as_flags(tmp_path):
    flags = init(
        "demo",
        "--framework",
        "xgboost",
        "--model-format",
        "ubj",
        "--model-source",
        "sample",
        "--sample-task",
        "classification",
        "--region",
        "eu-west-1",
        "--yes",
        cwd=tmp_path,
    )
    assert flags.returncode == 0, flags.stderr
    (tmp_path / "by-flags").mkdir()
    shutil.move(tmp_path / "demo", tmp_path / "by-flags" / "demo")

    child = pexpect.spawn(
        MODELCRATE,
        ["init"],
        cwd=str(tmp_path),
        encoding="utf-8",
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("MODELCRATE_")},
    )
    answers = [
        ("Project name", ""),
        ("an answer is needed", "Demo!"),
        ("lower-case letters", "demo"),  # a bad answer is explained and asked again
        ("Framework", "torch"),
        ("is not allowed", "xgboost"),
        ("Model source", ""),
        (r"Model format \(json, ubj, model\)", "ubj"),
        ("Sample model task", "classification"),
        ("Include tests", ""),
        ("Compile tree models", ""),
        ("Also train in the image", ""),
        ("Deploy target", ""),
        ("Instance type", ""),
        ("AWS region", "eu-west-1"),
        ("Execution role ARN", ""),
        ("Base image", ""),
    ]
    for question, answer in answers:
        child.expect(question)
        child.sendline(answer)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    by_prompts, by_flags = project_files(tmp_path / "demo"), project_files(tmp_path / "by-flags" / "demo")
    assert by_prompts.keys() == by_flags.keys()
    assert by_prompts == by_flags


def test_interactive_local_source_asks_for_the_model_file_and_reads_its_format(tmp_path, sample_model):
    model = tmp_path / "iris.joblib"
    shutil.copy(sample_model("sklearn", "joblib", "classification") / "model.joblib", model)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELCRATE_")}
    env["PYTHONPATH"] = str(Path(__file__).parents[2] / "src")  # this checkout's modelcrate, not the installed one
    child = pexpect.spawn(
        sys.executable,
        ["-c", "from modelcrate.cli.entry import main; main()", "init"],
        cwd=str(tmp_path),
        encoding="utf-8",
        timeout=120,
        env=env,
    )
    answers = [
        ("Project name", "iris"),
        ("Framework", "sklearn"),
        ("Model source", "local"),
        ("Model file or directory to copy", "missing.joblib"),
        ("does not exist", str(model)),  # a bad path is explained and asked again
        ("Include tests", ""),
        ("Compile tree models", ""),
        ("Also train in the image", ""),
        ("Deploy target", ""),
        ("Instance type", ""),
        ("AWS region", ""),
        ("Execution role ARN", ""),
        ("Base image", ""),
    ]
    for question, answer in answers:
        child.expect(question)
        child.sendline(answer)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    project = json.loads((tmp_path / "iris" / "modelcrate-project.json").read_text())
    assert (project["model_source"], project["model_format"]) == ("local", "joblib")
    assert (tmp_path / "iris" / "model" / "iris.joblib").read_bytes() == model.read_bytes()


@pytest.mark.parametrize("source,needed", [("local", "model_path"), ("registry", "registry_package")])
def test_a_prompted_source_is_accepted_before_what_it_needs_is_asked(source, needed):
    assert answer_problem("model_source", source, {**BASE, "model_format": "pkl"}) is None
    with pytest.raises(OptionsError, match=f"^{needed} is needed for model_source {source}"):
        resolve({**BASE, "model_source": source}, env={})


@pytest.mark.parametrize("source,target", [("sample", "sagemaker"), ("s3", "codebuild")])
def test_generated_scripts_are_executable_and_pass_bash_n_and_shellcheck(tmp_path, source, target):
    result = init(
        "demo",
        "--framework",
        "tensorflow",
        "--model-format",
        "savedmodel",
        "--model-source",
        source,
        "--deploy-target",
        target,
        "--yes",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    scripts = sorted((tmp_path / "demo").rglob("*.sh"))
    assert {s.name for s in scripts} >= {
        "build_and_push.sh",
        "deploy.sh",
        "teardown.sh",
        "package_model.sh",
        "submit_build.sh",
        "test_image.sh",
    }
    for script in scripts:
        assert os.access(script, os.X_OK), script
        subprocess.run(["bash", "-n", str(script)], check=True)
    checked = subprocess.run(
        ["shellcheck", "-x", *map(str, scripts)], cwd=tmp_path / "demo", capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout
    dockerfile = (tmp_path / "demo" / "Dockerfile").read_text()
    assert ("COPY model/ /opt/ml/model/" in dockerfile) == (source == "sample")
    assert (tmp_path / "demo" / "buildspec.yml").exists() == (target == "codebuild")


def run_project_tests(project: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test"],
        cwd=project,
        capture_output=True,
        text=True,
    )


def test_the_generated_projects_own_tests_pass(tmp_path):
    result = init(
        "demo",
        "--framework",
        "sklearn",
        "--model-format",
        "joblib",
        "--sample-task",
        "classification",
        "--yes",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    tests = run_project_tests(tmp_path / "demo")
    assert tests.returncode == 0, tests.stdout
    assert "2 passed" in tests.stdout
    requirements = (tmp_path / "demo" / "requirements.txt").read_text()
    assert "scikit-learn==1.7.1\njoblib==1.4.2\n" in requirements


def test_a_local_model_is_copied_with_its_metadata(tmp_path, sample_model):
    model = sample_model("sklearn", "joblib", "classification") / "model.joblib"
    result = init(
        "demo",
        "--framework",
        "sklearn",
        "--model-format",
        "joblib",
        "--model-source",
        "local",
        "--model-path",
        str(model),
        "--yes",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    copied = tmp_path / "demo" / "model"
    assert (copied / "model.joblib").read_bytes() == model.read_bytes()
    assert (copied / "modelcrate.json").is_file()
    tests = run_project_tests(tmp_path / "demo")
    assert tests.returncode == 0, tests.stdout


def test_the_version_a_model_was_saved_with_is_pinned_with_a_warning(tmp_path, monkeypatch):
    import joblib
    import sklearn.base
    from sklearn.tree import DecisionTreeRegressor

    monkeypatch.setattr(sklearn.base, "__version__", "1.6.1")  # as if saved by scikit-learn 1.6.1
    model_file = tmp_path / "old.pkl"
    joblib.dump(DecisionTreeRegressor().fit([[0.0], [1.0]], [0.0, 1.0]), model_file)
    monkeypatch.undo()
    result = init(
        "demo",
        "--framework",
        "sklearn",
        "--model-source",
        "local",
        "--model-path",
        str(model_file),
        "--yes",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "saved with sklearn 1.6.1; pinning that instead of 1.7.1" in result.stderr
    assert "scikit-learn==1.6.1\n" in (tmp_path / "demo" / "requirements.txt").read_text()
    assert "ai.modelcrate.framework-version=1.6.1" in (tmp_path / "demo" / "Dockerfile").read_text()


def test_optimize_compiles_a_tree_model_and_pins_its_runtime(tmp_path):
    result = init("demo", "--framework", "sklearn", "--model-format", "joblib", "--optimize", "--yes", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    model_dir = tmp_path / "demo" / "model"
    compiled = json.loads((model_dir / "modelcrate.json").read_text())["compiled"]
    assert compiled["verified"] and compiled["rows_checked"] >= 10_000
    assert (model_dir / compiled["file"]).is_file()
    from importlib.metadata import version

    assert f"onnxruntime=={version('onnxruntime')}\n" in (tmp_path / "demo" / "requirements.txt").read_text()
    tests = run_project_tests(tmp_path / "demo")  # the generated handler test loads the compiled model
    assert tests.returncode == 0, tests.stdout


def test_optimize_leaves_a_model_it_cannot_compile_with_a_warning(tmp_path):
    result = init("demo", "--framework", "tensorflow", "--model-format", "keras", "--optimize", "--yes", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "optimize: not compiled, the original model serves" in result.stderr
    model_dir = tmp_path / "demo" / "model"
    assert json.loads((model_dir / "modelcrate.json").read_text())["compiled"] is None
    assert sorted(p.name for p in model_dir.iterdir()) == ["model.keras", "modelcrate.json"]


def generated_files(tmp_path, **chosen) -> tuple[str, str]:
    """requirements.txt and the Dockerfile of a project made with these options (flags)."""
    from modelcrate.scaffold.generate import generate

    options, _ = resolve({**BASE, "destination": tmp_path / "project", **chosen}, env={})
    project = generate(options).path
    return (project / "requirements.txt").read_text(), (project / "Dockerfile").read_text()


S3_XGBOOST = {"framework": "xgboost", "model_format": "json", "model_source": "s3"}


@pytest.mark.parametrize(
    ("instance_type", "requirement"),
    [
        # x86 CPUs: the CPU build, a 4.5 MB wheel (the full one is 154 MB and pulls NVIDIA's 323 MB NCCL).
        ("cpu", "xgboost-cpu==2.1.3"),
        ("ml.c5.xlarge", "xgboost-cpu==2.1.3"),
        # GPUs need the full build's CUDA kernels.
        ("gpu", "xgboost==2.1.3"),
        ("ml.g4dn.xlarge", "xgboost==2.1.3"),
        ("ml.p3.2xlarge", "xgboost==2.1.3"),
        # Graviton: xgboost-cpu 2.1.3 has no aarch64 wheel; the full one for aarch64 is 4.2 MB, without CUDA.
        ("ml.c7g.xlarge", "xgboost==2.1.3"),
    ],
)
def test_xgboost_projects_pin_the_build_their_instance_type_needs(tmp_path, instance_type, requirement):
    requirements, _ = generated_files(tmp_path, **S3_XGBOOST, instance_type=instance_type)
    assert f"\n{requirement}\n" in requirements


def test_xgboost_releases_before_the_cpu_build_pin_the_full_package(tmp_path, sample_model):
    model = tmp_path / "model"
    shutil.copytree(sample_model("xgboost", "json"), model)
    metadata = json.loads((model / "modelcrate.json").read_text())
    (model / "modelcrate.json").write_text(json.dumps({**metadata, "framework_version": "2.0.3"}))
    requirements, _ = generated_files(
        tmp_path, framework="xgboost", model_format="json", model_source="local", model_path=model / "model.json"
    )
    assert "\nxgboost==2.0.3\n" in requirements  # xgboost-cpu starts at 2.1.1


def test_tensorflow_projects_keep_setuptools(tmp_path):
    requirements, dockerfile = generated_files(
        tmp_path, framework="tensorflow", model_format="keras", model_source="s3"
    )
    # TensorFlow declares setuptools as a dependency; ML Container Creator pins it the same way.
    assert "\ntensorflow==2.20.0\nsetuptools>=65.0.0\n" in requirements
    assert "pip uninstall --yes --quiet pip\n" in dockerfile
    requirements, dockerfile = generated_files(tmp_path / "sk", framework="sklearn", model_source="s3")
    assert "setuptools" not in requirements
    assert "pip uninstall --yes --quiet pip setuptools\n" in dockerfile


@pytest.mark.parametrize(
    ("task", "keys"),
    [("classification", "predicted_label,probability,probabilities,labels"), ("regression", "predicted_label")],
)
def test_generated_images_publish_the_inference_keys_their_model_can_emit(tmp_path, task, keys):
    _, dockerfile = generated_files(tmp_path, model_format="joblib", sample_task=task)
    assert f"ENV SAGEMAKER_INFERENCE_SUPPORTED={keys}\n" in dockerfile


def test_an_image_whose_model_arrives_later_publishes_no_inference_keys(tmp_path):
    _, dockerfile = generated_files(tmp_path, **S3_XGBOOST)
    assert "SAGEMAKER_INFERENCE_SUPPORTED" not in dockerfile
