"""Project generation: options, prompts, templates and the Abalone sample models."""
