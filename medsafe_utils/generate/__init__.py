"""01_generate: elicit harmful medical requests per AMA principle, extract them from the answers,
rate them with an LLM harm filter and deduplicate."""
