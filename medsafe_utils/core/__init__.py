"""The shared core every step stands on: paths, errors, the resumable store, artifacts, the step
graph (which files steps hand to each other) and the refusal check."""
