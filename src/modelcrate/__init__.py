"""modelcrate: ship a classic ML model as a SageMaker-compatible container, and govern it."""

__version__ = "0.1.0"
