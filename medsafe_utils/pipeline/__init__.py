"""Run the notebooks in order with papermill, and index what they wrote."""
