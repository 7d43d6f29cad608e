"""Beam search against an uncached, per-prompt transcription of LoRA's gpt2_beam.py loop, on a tiny GPT-2."""

from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np
import pytest
from transformers import AutoTokenizer, FlaxGPT2LMHeadModel, GPT2Config

from pst_jax.nlg.beam_search import decode_rows, make_generate

EOS = 0
STEPS = 10
WIDTH = 16  # uncached reference rows, right-padded: >= longest prompt + STEPS - 1
REFERENCE_ROWS = 4  # >= every num_beams below, so the reference forward compiles once
PROMPTS = [[5, 9, 3], [7, 2, 2, 11, 4], [13, 1, 8, 20, 6, 17]]


class Config(NamedTuple):
    num_beams: int
    ngram: int
    length_penalty: float


GREEDY = Config(1, 0, 0.8)
CONFIGS = [GREEDY, Config(4, 0, 0.8), Config(4, 2, 0.8), Config(3, 3, 2.0), Config(3, 2, 0.0), Config(3, 2, -0.5)]


def _left_padded(prompts: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    width = max(map(len, prompts))
    ids = np.array([[EOS] * (width - len(p)) + p for p in prompts], np.int32)
    mask = np.array([[0] * (width - len(p)) + [1] * len(p) for p in prompts], np.int32)
    return ids, mask


@pytest.fixture(scope="module")
def lm():
    """A tiny GPT-2 with an untied head (a tied one mostly copies its input) and a moderately likely eos."""
    config = GPT2Config(
        vocab_size=24, n_positions=64, n_embd=16, n_layer=2, n_head=2, initializer_range=0.3, tie_word_embeddings=False
    )
    model = FlaxGPT2LMHeadModel(config, _do_init=False)
    params = jax.tree.map(np.asarray, jax.jit(model.init_weights, static_argnums=1)(jax.random.key(0), (1, 1)))
    head = params["lm_head"]["kernel"] = 2 * params["lm_head"]["kernel"]  # peakier distributions
    # Shifting the final layer norm's output along eos's head column raises every eos logit.
    ln_f = params["transformer"]["ln_f"]
    ln_f["bias"] = ln_f["bias"] + 0.3 * head[:, EOS] / np.linalg.norm(head[:, EOS])
    return model, params


@pytest.fixture(scope="module")
def last_logits(lm):
    """``rows -> [len(rows), V]`` float64 logits after each row (rows of one length), without a cache."""
    model, params = lm
    forward = jax.jit(lambda p, ids: model(ids, params=p).logits)

    def run(rows: list[list[int]]) -> np.ndarray:
        ids = np.zeros((REFERENCE_ROWS, WIDTH), np.int32)  # right padding cannot reach earlier positions
        ids[: len(rows), : len(rows[0])] = rows
        return np.asarray(forward(params, ids), np.float64)[: len(rows), len(rows[0]) - 1]

    return run


@pytest.fixture(scope="module")
def generate(lm):
    """``(config, prompts) -> [len(prompts), STEPS]`` from the jitted search, one compile per config and shape."""
    model, params = lm
    compiled = {}

    def run(config: Config, prompts: list[list[int]] = PROMPTS) -> np.ndarray:
        if config not in compiled:
            compiled[config] = make_generate(
                model,
                num_beams=config.num_beams,
                max_new_tokens=STEPS,
                length_penalty=config.length_penalty,
                no_repeat_ngram_size=config.ngram,
                eos_token_id=EOS,
            )
        return np.asarray(compiled[config](params, *_left_padded(prompts)))

    return run


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _fairseq_bans(history: np.ndarray, n: int, cur_len: int) -> list[list[int]]:
    """LoRA's ``_calc_banned_ngram_tokens`` (from fairseq)."""
    if cur_len + 1 < n:
        return [[] for _ in history]
    banned = []
    for tokens in history.tolist():
        grams: dict[tuple[int, ...], list[int]] = {}
        for gram in zip(*[tokens[j:] for j in range(n)], strict=False):
            grams.setdefault(gram[:-1], []).append(gram[-1])
        banned.append(grams.get(tuple(tokens[cur_len + 1 - n : cur_len]), []))
    return banned


def _add_beam_candidate(best: dict, beam_scores: np.ndarray, history: np.ndarray, lp: float, eos: int | None):
    """LoRA's ``_add_beam_candidate`` for one prompt: finished beams may replace the best, then die."""
    for beam in range(len(beam_scores)):
        if eos is None or history[beam, -1] == eos:
            score = beam_scores[beam] / history.shape[1] ** lp
            if "score" not in best or best["score"] < score:
                best.update(score=score, tokens=history[beam].tolist())
            beam_scores[beam] = -np.inf


def _lora_reference(last_logits, prompt: list[int], config: Config) -> list[int]:
    """LoRA's beam loop for one prompt, recomputing the whole sequence each step; the best's tokens."""
    k = config.num_beams
    beam_scores = np.zeros(k)
    history = np.zeros((k, 0), np.int64)
    best: dict = {}
    for i in range(STEPS):
        logits = last_logits([prompt + h for h in history.tolist()])
        if config.ngram > 0 and i > 0:
            for row, banned in enumerate(_fairseq_bans(history, config.ngram, i)):
                logits[row, banned] = -np.inf
        logp = _log_softmax(logits)
        vocab = logp.shape[-1]
        next_scores = logp[0] if i == 0 else (beam_scores[:, None] + logp).reshape(-1)
        chosen = np.argsort(-next_scores, kind="stable")[:k]
        beam_scores = next_scores[chosen]
        history = np.concatenate([history[chosen // vocab], (chosen % vocab)[:, None]], axis=1)
        _add_beam_candidate(best, beam_scores, history, config.length_penalty, EOS)
    _add_beam_candidate(best, beam_scores, history, config.length_penalty, None)
    return best["tokens"]


def _greedy(last_logits, prompt: list[int]) -> list[int]:
    tokens: list[int] = []
    while len(tokens) < STEPS and EOS not in tokens:
        tokens.append(int(np.argmax(last_logits([prompt + tokens])[0])))
    return tokens


def _eos_filled(tokens: list[int]) -> list[int]:
    return tokens + [EOS] * (STEPS - len(tokens))


def _through_eos(row: np.ndarray) -> list[int]:
    """A row's tokens up to and including its first eos."""
    ends = np.flatnonzero(row == EOS)
    return row[: ends[0] + 1 if ends.size else len(row)].tolist()


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_matches_lora_reference(generate, last_logits, config):
    expected = [_eos_filled(_lora_reference(last_logits, prompt, config)) for prompt in PROMPTS]
    np.testing.assert_array_equal(generate(config), expected)


def test_cases_cover_finished_and_unfinished_hypotheses(generate):
    rows = np.concatenate([generate(config) for config in CONFIGS])
    finished = [EOS in row for row in rows]
    assert any(finished) and not all(finished), rows


def test_single_beam_is_greedy(generate, last_logits):
    expected = [_eos_filled(_greedy(last_logits, prompt)) for prompt in PROMPTS]
    np.testing.assert_array_equal(generate(GREEDY), expected)


@pytest.mark.parametrize("config", [c for c in CONFIGS if c.ngram], ids=str)
def test_no_generated_ngram_repeats(generate, config):
    for row in generate(config):
        tokens = _through_eos(row)
        grams = [tuple(tokens[j : j + config.ngram]) for j in range(len(tokens) - config.ngram + 1)]
        assert len(grams) == len(set(grams)), tokens


def test_bans_change_the_output(generate):
    banned, free = Config(4, 2, 0.8), Config(4, 0, 0.8)
    assert (generate(banned) != generate(free)).any()


def test_left_padding_does_not_change_results(generate):
    config = Config(4, 2, 0.8)
    assert len(PROMPTS[0]) < len(PROMPTS[-1])  # padded in the batch
    np.testing.assert_array_equal(generate(config, PROMPTS[:1])[0], generate(config)[0])


def test_decode_rows_cuts_at_first_eos():
    tokenizer = AutoTokenizer.from_pretrained(Path(__file__).parent / "fixtures" / "gpt2_tokenizer")
    eos = tokenizer.eos_token_id
    text = tokenizer.encode(" the cat .")
    rows = np.array(
        [text + [eos, *text, eos], [*text, *text, *text[:2]], [eos] * (2 * len(text) + 2)],
        np.int32,
    )
    # " ." stays apart: clean_up_tokenization_spaces=True would give "the cat."
    assert decode_rows(tokenizer, rows, eos) == ["the cat .", "the cat . the cat . the cat", ""]
