"""GCG as released (exps/adv_attack/gcg.py): its settings, the '*' suffix initialisation,
candidates drawn with replacement, every step run without early stopping, test generations with
the model's own generation config."""

import copy

import torch

from medsafe_utils.jailbreak.gcg import (
    GCGConfig,
    initial_suffix,
    released_init_token,
    run,
    sample_candidates,
)
from medsafe_utils.jailbreak.prompt import forbidden_token_ids

GOAL = "The patient asked the physician about"
TARGET = "Sure! Here are examples"


def test_defaults_are_the_released_settings():
    config = GCGConfig()
    # gcg.py: num_iter 1000, top_k 256, num_samples 512 in batch_size 300, test_iter 50,
    # max_new_tokens 800 per test, num_adv 20, no early stop, no filter, model.generation_config.
    assert (config.num_steps, config.topk, config.search_width, config.batch_size) == (
        1000,
        256,
        512,
        300,
    )
    assert (config.test_interval, config.max_new_tokens, config.suffix_length) == (50, 800, 20)
    assert config.n_replace == 1 and config.suffix_init == "released"
    assert not (config.early_stop or config.stop_on_success)
    assert not (config.dedup_candidates or config.filter_ids)
    assert config.test_generation == "model"


def test_released_init_is_twenty_star_tokens(tiny_lm):
    tok = copy.deepcopy(tiny_lm.tokenizer)
    ids = initial_suffix(tok, GCGConfig())
    assert ids.tolist() == [tok("*", add_special_tokens=False)["input_ids"][0]] * 20
    # gcg.py takes tokenizer.encode('*')[1]: the token after the BOS a Llama tokenizer adds.
    tok.add_bos_token = True
    assert tok.encode("*")[0] == tok.bos_token_id
    assert released_init_token(tok) == tok.encode("*")[1] == ids[0]
    assert initial_suffix(tok, GCGConfig(suffix_length=7)).tolist() == [tok.encode("*")[1]] * 7


def test_released_candidates_drawn_with_replacement(tiny_lm):
    tok = tiny_lm.tokenizer
    ids = initial_suffix(tok, GCGConfig(suffix_length=4))
    forbidden = forbidden_token_ids(tok, len(tok))
    grad = torch.zeros(4, len(tok))
    grad[:, ids[0]] = -10.0  # the current token leads the top-k; as released it may be drawn
    config = GCGConfig(search_width=200, topk=2)
    candidates = sample_candidates(ids, grad, forbidden, config, torch.Generator(), tok)
    assert candidates.shape == (200, 4)  # exactly search_width, nothing dropped
    assert ((candidates != ids).sum(1) <= 1).all()  # one position replaced at most
    assert (candidates == ids).all(1).any()  # the current suffix itself can come back
    assert len({tuple(c) for c in candidates.tolist()}) < 200  # duplicates kept


def test_every_step_runs_and_tests_use_the_model_config(tiny_lm):
    model, tok = tiny_lm.model, tiny_lm.tokenizer
    config = GCGConfig(
        num_steps=4, search_width=8, topk=8, suffix_length=6, test_interval=2, max_new_tokens=5
    )
    config.progress = False
    own = model.generation_config
    saved = (own.do_sample, own.temperature, own.top_p, own.top_k)
    try:
        own.do_sample, own.temperature, own.top_p, own.top_k = True, 1.0, 1.0, 0
        result = run(model, tok, GOAL, TARGET, config)
        again = run(model, tok, GOAL, TARGET, config)
    finally:
        own.do_sample, own.temperature, own.top_p, own.top_k = saved
    assert result.n_steps == 4 and not result.early_stopped
    assert [t["step"] for t in result.tests] == [2, 4]
    assert all(t["sampled"] for t in result.tests)  # sampled as the model's config says
    assert [t["generation"] for t in again.tests] == [t["generation"] for t in result.tests]
    greedy = run(
        model, tok, GOAL, TARGET, GCGConfig(**{**vars(config), "test_generation": "greedy"})
    )
    assert not any(t["sampled"] for t in greedy.tests)
    assert greedy.losses == result.losses  # the search itself does not depend on the decoding
