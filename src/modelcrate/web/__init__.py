"""The web console (``modelcrate ui``): server-rendered pages over the registry and the model cards."""
