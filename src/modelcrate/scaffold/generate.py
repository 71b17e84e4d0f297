"""Render a container project from :class:`ProjectOptions` (Jinja2 templates), atomically."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
import warnings
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import jinja2

from modelcrate.predictors import METADATA_FILE, ModelMetadata
from modelcrate.predictors.compiled import RUNTIME
from modelcrate.scaffold.options import DEFAULT_FRAMEWORK_VERSIONS, SAGEMAKER_FRAMEWORKS, OptionsError, ProjectOptions

PROJECT_FILE = "modelcrate-project.json"
XGBOOST_CPU_SINCE = (2, 1, 1)  # the first release of xgboost-cpu on PyPI
RUNTIME_PACKAGES = ("numpy", "httptools", "uvloop")
_TEMPLATES = Path(__file__).with_name("templates")
_SCRIPTS = (
    "deploy/common.sh",
    "deploy/build_and_push.sh",
    "deploy/package_model.sh",
    "deploy/deploy.sh",
    "deploy/teardown.sh",
    "deploy/submit_build.sh",
    "test/test_image.sh",
)


@dataclass
class GeneratedProject:
    path: Path
    framework_version: str
    warnings: list[str] = field(default_factory=list)


def _xgboost_package(options: ProjectOptions, framework_version: str) -> str:
    """xgboost-cpu where it fits, the full xgboost elsewhere. For 2.1.3 on x86-64 the CPU build's wheel is 4.5 MB,
    the full one 154 MB plus NVIDIA's NCCL (323 MB); GPU instances need the full build's CUDA kernels, and
    xgboost-cpu has no aarch64 wheels (the full aarch64 wheel, 4.2 MB, has no CUDA) nor releases before 2.1.1."""
    release = tuple(int(part) for part in re.findall(r"\d+", framework_version)[:3])
    if options.gpu or options.platform != "linux/amd64" or release < XGBOOST_CPU_SINCE:
        return "xgboost"
    return "xgboost-cpu"


def _framework_requirements(options: ProjectOptions, framework_version: str) -> list[str]:
    if options.framework == "sklearn":
        packages = [f"scikit-learn=={framework_version}", "joblib==1.4.2"]
    elif options.framework == "xgboost":
        packages = [f"{_xgboost_package(options, framework_version)}=={framework_version}"]
    else:
        # As ML Container Creator pins it: TensorFlow declares setuptools as a dependency.
        packages = [f"tensorflow=={framework_version}", "setuptools>=65.0.0"]
    if options.optimize:
        packages.append(f"{RUNTIME}=={version(RUNTIME)}")  # serves the compiled model.onnx
    return packages


def compile_model(model_dir: Path) -> str | None:
    """Compile the model for faster serving (``modelcrate optimize``); a warning when it cannot be compiled."""
    from modelcrate.compiler.trees import NotCompilable, optimize

    try:
        optimize(model_dir)
    except NotCompilable as exc:
        return f"optimize: not compiled, the original model serves: {exc}"
    return None


def recorded_framework_version(options: ProjectOptions, model_dir: Path) -> str | None:
    """The framework version the model file says it was saved with, when it says."""
    metadata = ModelMetadata.read(model_dir)
    if metadata.framework_version:
        return metadata.framework_version
    path = options.model_path
    try:
        if options.framework == "sklearn" and path and path.is_file():
            import joblib
            from sklearn.exceptions import InconsistentVersionWarning

            # scikit-learn warns when a pickle comes from another version, and says which.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", InconsistentVersionWarning)
                joblib.load(path)
            older = [w.message for w in caught if isinstance(w.message, InconsistentVersionWarning)]
            return older[0].original_sklearn_version if older else version("scikit-learn")
        if options.framework == "xgboost" and path and path.is_file():
            import xgboost

            booster = xgboost.Booster(model_file=str(path))
            return ".".join(map(str, json.loads(booster.save_raw("json"))["version"]))
    except Exception:  # an unreadable version is no reason to refuse: the default pin applies
        return None
    return None


def _place_model(options: ProjectOptions, model_dir: Path) -> None:
    if options.model_source == "sample":
        from modelcrate.scaffold.sample_models import create_sample_model

        create_sample_model(options.framework, options.model_format, options.sample_task, model_dir)
    elif options.model_source == "local":
        source = options.model_path
        if source.is_dir() and options.model_format != "savedmodel":
            shutil.copytree(source, model_dir)
        else:
            model_dir.mkdir()
            copy = shutil.copytree if source.is_dir() else shutil.copy2
            copy(source, model_dir / source.name)
            sibling_metadata = source.parent / METADATA_FILE
            if sibling_metadata.is_file():
                shutil.copy2(sibling_metadata, model_dir / METADATA_FILE)


def generate(options: ProjectOptions, force: bool = False) -> GeneratedProject:
    target = options.target_dir
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not force:
        raise OptionsError(f"destination {target} exists and is not empty; choose another or pass --force")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model_dir = staging / "model"
        _place_model(options, model_dir)
        default = DEFAULT_FRAMEWORK_VERSIONS[options.framework]
        recorded = recorded_framework_version(options, model_dir) if model_dir.exists() else None
        framework_version = recorded or default
        warnings = []
        if recorded and recorded != default:
            warnings.append(
                f"the model was saved with {options.framework} {recorded}; pinning that instead of {default}"
            )
        if options.optimize and model_dir.exists():
            problem = compile_model(model_dir)
            if problem:
                warnings.append(problem)
        note = "as recorded in the model file" if recorded else "default pin"
        _render(options, staging, framework_version, note, _inference_supported(model_dir))
        if options.with_training:
            _write_training_spec(options, staging)
        (staging / PROJECT_FILE).write_text(options.model_dump_json(indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return GeneratedProject(target, framework_version, warnings)


def _write_training_spec(options: ProjectOptions, root: Path) -> None:
    """code/training.json: what `train` accepts (hyperparameters, metric definitions) for the model's task, which
    its modelcrate.json records (else the sample task)."""
    from modelcrate.training import default_spec

    model_dir = root / "model"
    task = (ModelMetadata.read(model_dir).task if model_dir.exists() else None) or options.sample_task
    spec = default_spec(options.framework, task)
    (root / "code" / "training.json").write_text(json.dumps(spec, indent=2) + "\n")


def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES), undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )


def _context(options: ProjectOptions, framework_version: str, framework_version_note: str) -> dict:
    return {
        "o": options,
        "framework_version": framework_version,
        "framework_version_note": framework_version_note,
        "runtime_requirements": [f"{name}=={version(name)}" for name in RUNTIME_PACKAGES],
        "framework_requirements": _framework_requirements(options, framework_version),
    }


def place_registry_model(root: Path, options: ProjectOptions) -> str:
    """Resolve the project's registry package into ``root/model`` (checked against its sha256) once its container's
    Framework is the project's; requirements.txt then pins the package's FrameworkVersion when it names one.
    Returns the package's ARN."""
    from modelcrate.registry.service import Registry

    registry = Registry()
    identifier = registry.resolve(options.registry_package)
    described = registry.describe_model_package(identifier)
    container = described["InferenceSpecification"]["Containers"][0]
    framework, framework_version = container.get("Framework"), container.get("FrameworkVersion")
    expected = SAGEMAKER_FRAMEWORKS[options.framework]
    if framework and framework.upper() != expected:
        raise OptionsError(
            f"{described['ModelPackageArn']} is a {framework} model (InferenceSpecification.Containers[0].Framework), "
            f"but this project serves {options.framework} ({expected}): name a {expected} package with "
            f"--registry-package, or create the project with the package's framework"
        )
    arn = registry.export_model(identifier, root / "model")
    if framework_version:
        context = _context(options, framework_version, f"as registered in {arn}")
        (root / "requirements.txt").write_text(_templates().get_template("requirements.txt.j2").render(context))
    return arn


def _inference_supported(model_dir: Path) -> str:
    """SAGEMAKER_INFERENCE_SUPPORTED for the image: empty when the model arrives later or only user code loads it."""
    from modelcrate.serving.hints import hint_of_model

    return hint_of_model(model_dir) if model_dir.exists() else ""


def _render(
    options: ProjectOptions, root: Path, framework_version: str, framework_version_note: str, inference_supported: str
) -> None:
    env = _templates()
    context = {
        **_context(options, framework_version, framework_version_note),
        "inference_supported": inference_supported,
    }
    outputs = {
        "Dockerfile": "Dockerfile.j2",
        "requirements.txt": "requirements.txt.j2",
        ".dockerignore": "dockerignore.j2",
        "README.md": "README.md.j2",
        "code/inference.py": "code/inference.py.j2",
        **{script: f"{script}.j2" for script in _SCRIPTS},
    }
    if options.deploy_target == "codebuild":
        outputs["buildspec.yml"] = "buildspec.yml.j2"
    if options.include_tests and (root / "model").exists():
        outputs["test/test_handler.py"] = "test/test_handler.py.j2"
    if options.include_tests and options.with_training:
        outputs["test/test_training.py"] = "test/test_training.py.j2"
    if not options.include_tests:
        outputs.pop("test/test_image.sh")
    for name, template in outputs.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(env.get_template(template).render(context))
        if name.endswith(".sh"):
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
