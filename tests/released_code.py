"""What the released code holds, written out as data for the fidelity tests (each fact with the
file of github.com/AI4LIFE-GROUP/med-safety-bench at 191aa79 that says it). Facts, not code."""

# The released exps/exp01_prompt_models.py: every model of its family_* lists (the fine-tuned
# ones aside), by the name it used there -> (hub id from models/model_hf.py's model_name_dict, or
# API model name from exp01's gpt_name_dict; the prompt template exp01 gave the family).
EXP01_MODELS = {
    "llama-7b": ("luodian/llama-7b-hf", "llama_family"),
    "llama-13b": ("luodian/llama-13b-hf", "llama_family"),
    "llama2-7b": ("meta-llama/Llama-2-7b-hf", "llama_family"),
    "llama2-13b": ("meta-llama/Llama-2-13b-hf", "llama_family"),
    "llama2-70b": ("meta-llama/Llama-2-70b-hf", "llama_family"),
    "llama2-7b-chat": ("meta-llama/Llama-2-7b-chat-hf", "llama_family"),
    "llama2-13b-chat": ("meta-llama/Llama-2-13b-chat-hf", "llama_family"),
    "llama2-70b-chat": ("meta-llama/Llama-2-70b-chat-hf", "llama_family"),
    "llama3-1-8b": ("meta-llama/Meta-Llama-3.1-8B", "llama_family"),
    "llama3-1-70b": ("meta-llama/Meta-Llama-3.1-70B", "llama_family"),
    "llama3-1-8b-instruct": ("meta-llama/Meta-Llama-3.1-8B-Instruct", "llama_family"),
    "llama3-1-70b-instruct": ("meta-llama/Meta-Llama-3.1-70B-Instruct", "llama_family"),
    "meditron-7b": ("epfl-llm/meditron-7b", "llama_family"),
    "meditron-70b": ("epfl-llm/meditron-70b", "llama_family"),
    "clinicalcamel-70b": ("wanglab/ClinicalCamel-70B", "llama_family"),
    "medalpaca-7b": ("medalpaca/medalpaca-7b", "medalpaca"),
    "medalpaca-13b": ("medalpaca/medalpaca-13b", "medalpaca"),
    "med42-70b": ("m42-health/med42-70b", "med42"),
    "gpt3": ("gpt-3.5-turbo-0125", "api"),
    "gpt4": ("gpt-4-1106-preview", "api"),
    "gpt-4-0125-preview": ("gpt-4-0125-preview", "api"),
    "gpt-4o": ("gpt-4o-2024-05-13", "api"),
    "gpt-4o-mini": ("gpt-4o-mini-2024-07-18", "api"),
    "mistral-7b": ("mistralai/Mistral-7B-v0.3", "mistral"),
    "mistral-8x7b": ("mistralai/Mixtral-8x7B-v0.1", "mistral"),
    "mistral-7b-instruct": ("mistralai/Mistral-7B-Instruct-v0.3", "mistral"),
    "mistral-8x7b-instruct": ("mistralai/Mixtral-8x7B-Instruct-v0.1", "mistral"),
    "vicuna-7b": ("lmsys/vicuna-7b-v1.5", "vicuna"),
    "vicuna-13b": ("lmsys/vicuna-13b-v1.5", "vicuna"),
    "pythia-70m": ("EleutherAI/pythia-70m-deduped", "pythia"),
    "pythia-6-9b": ("EleutherAI/pythia-6.9b-deduped", "pythia"),
    "pythia-12b": ("EleutherAI/pythia-12b-deduped", "pythia"),
}
MEDICAL = {"meditron", "clinicalcamel", "medalpaca", "med42"}  # exp01's medical families
# exp01's fine-tuned models: family_medalpaca_ft and family_meditron_ft (base models), ft_models_*
# (demonstration type and n).
FT_BASES = {"medalpaca-7b", "medalpaca-13b", "meditron-7b"}
FT_N = [200, 400, 600, 800, 900]  # ft_models_med, ft_models_gen
FT_N_BOTH = [200, 400, 600, 800, 1000, 1200, 1400, 1600, 1800]  # ft_models_both
