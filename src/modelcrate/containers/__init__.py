"""Build, run and test images through the Docker engine (the SageMaker contract, on one machine)."""
