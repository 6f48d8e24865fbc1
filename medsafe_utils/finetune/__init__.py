"""06_finetune: 4-bit QLoRA on safety demonstrations, then re-prompt and re-judge."""
