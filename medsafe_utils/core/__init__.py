"""The shared core every step stands on: paths, errors, file readers, the resumable store,
artifacts, the step graph (which files steps hand to each other), statistics and figures. It
imports nothing else of the package."""
