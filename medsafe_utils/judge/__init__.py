"""05_judge: score each response 1-5 against a usage policy, validate the judges, and the
harmfulness tables and figures."""
