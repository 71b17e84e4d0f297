"""The training runtime inside an algorithm image: ``docker run IMAGE train`` under SageMaker's contract.

Light like the serving runtime: numpy, the standard library, and the framework being trained (imported only
when it trains). ``train`` exits 0 on success, 1 when the job's input or configuration is wrong (spec,
hyperparameters, channels, data, hosts) or its data outgrows the memory, and 2 on internal errors; the reason
goes to /opt/ml/output/failure.
"""

from modelcrate.training.job import run_training
from modelcrate.training.spec import default_spec

__all__ = ["default_spec", "run_training"]
