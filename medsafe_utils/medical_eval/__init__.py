"""07_medical_eval: MedQA, MedMCQA, PubMedQA and MMLU-medical before and after fine-tuning."""
