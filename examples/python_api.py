# %% [markdown]
# # modelcrate from Python
#
# The registry and model cards speak boto3's `sagemaker` client: the same method names, keyword arguments and
# answers. Everything here runs in a temporary directory: SQLite, artifacts on disk, the model served by this
# machine's runtime. No Docker, no AWS, nothing downloaded. Run it as a script, or cell by cell (`# %%`) in
# VS Code, PyCharm or Jupyter (jupytext).

# %%
import json
import shutil
import tempfile
from pathlib import Path

import modelcrate

work = Path(tempfile.mkdtemp(prefix="modelcrate-example-"))

# %% [markdown]
# ## An Abalone model
# Trained offline from the data shipped with modelcrate: a scikit-learn regressor of the rings (the age).

# %%
model_dir = work / "model"
metadata = modelcrate.sample_model("sklearn", model_dir, task="regression")
print(f"model: {metadata.framework} {metadata.framework_version}, held-out {metadata.metrics}")

# %% [markdown]
# ## The registry, as `boto3.client("sagemaker")`
# Swap this line for `boto3.client("sagemaker")` and the calls below are the same.

# %%
sm = modelcrate.client("sagemaker", database_url=f"sqlite:///{work / 'registry.db'}", artifacts=work / "artifacts")

sm.create_model_package_group(ModelPackageGroupName="abalone", ModelPackageGroupDescription="Abalone age")
# register_model is modelcrate's own: it packs the model directory and fills the CreateModelPackage request.
registered = sm.register_model(model_dir, "abalone", description="Rings from the shell's measurements")
arn = registered.package["ModelPackageArn"]
print(f"registered: {arn}")

# %%
described = sm.describe_model_package(ModelPackageName=arn)
print(f"described: version {described['ModelPackageVersion']}, {described['ModelApprovalStatus']}")
listed = sm.list_model_packages(ModelPackageGroupName="abalone")["ModelPackageSummaryList"]
print(f"listed: {[summary['ModelPackageArn'] for summary in listed]}")

# %%
sm.update_model_package(
    ModelPackageArn=arn, ModelApprovalStatus="Approved", ApprovalDescription="Held-out error is acceptable"
)
print(f"approval: {sm.describe_model_package(ModelPackageName=arn)['ModelApprovalStatus']}")

# %% [markdown]
# ## A model card for that version

# %%
sm.create_model_card(
    ModelCardName="abalone-card",
    ModelCardStatus="Draft",
    Content={
        "model_overview": {"model_description": "Predicts an abalone's rings (its age) from shell measurements."},
        "intended_uses": {"purpose_of_model": "Sorting the catch by age", "risk_rating": "Low"},
        "model_package_details": {"model_package_arn": arn},
    },
)
card = sm.describe_model_card(ModelCardName="abalone-card")
print(f"card: {card['ModelCardName']} version {card['ModelCardVersion']}, {card['ModelCardStatus']}")

# %% [markdown]
# ## Serve it locally and invoke it
# The serving runtime that goes into every image, in its own process; stopped when the block ends.

# %%
rows = [sample["input"] for sample in metadata.samples]
csv = "".join(",".join(map(str, row)) + "\n" for row in rows)
with modelcrate.serve_locally(model_dir, workers=1) as server:
    answer = server.invoke(csv, "text/csv", accept="application/json")
print(f"served: {json.loads(answer)}")

# %% [markdown]
# ## A batch transform job on the approved package
# `registry:abalone/1` runs the package's own model, checked against its sha256, as SageMaker would.

# %%
(work / "input").mkdir()
(work / "input" / "shells.csv").write_text(csv)
summary = modelcrate.batch_transform(
    "registry:abalone/1",
    input=work / "input",
    output=work / "output",
    split_type="Line",
    accept="text/csv",
    assemble_with="Line",
    workers=1,
    registry=sm,
)
print(f"transform: {summary['TransformJobStatus']}, {summary['RecordsIn']} records")
print((work / "output" / "shells.csv.out").read_text(), end="")

# %%
shutil.rmtree(work)
