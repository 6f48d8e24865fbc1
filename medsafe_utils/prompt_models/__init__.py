"""04_prompt_models: the harmful medical and general requests, and one call per model to answer
them (also used by 06_finetune for the fine-tuned models)."""
