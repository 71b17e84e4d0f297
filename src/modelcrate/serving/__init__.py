"""The in-image serving runtime: the SageMaker hosting contract. Imports no control-plane code."""
