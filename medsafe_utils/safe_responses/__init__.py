"""03_safe_responses: safe responses to harmful requests, safety demonstrations, the train/test
split and the fine-tuning splits."""
