"""A model registry in SageMaker's shapes: package groups, versioned packages, approval, validation, history."""
