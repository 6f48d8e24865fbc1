"""02_jailbreak: GCG adversarial suffixes that make a safety-aligned chat model write harmful
medical requests."""
