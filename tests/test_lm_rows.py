"""Causal-LM rows, batches and prompts for data-to-text, on real rows of tests/fixtures/nlg and GPT-2's tokenizer."""

from pathlib import Path

import numpy as np
import pytest

from pst_jax.data.batching import length_buckets
from pst_jax.nlg.data import NLGExample, load_nlg_dir
from pst_jax.nlg.rows import encode_for_lm, encode_prompts, lm_batches, prompt_batches

FIXTURES = Path(__file__).parent / "fixtures"
NLG = FIXTURES / "nlg"
EOS = "<|endoftext|>"


@pytest.fixture
def tokenizer(gpt2_tokenizer):
    return gpt2_tokenizer


def test_tokenizer_fixture_builds_a_fast_gpt2_tokenizer(tokenizer):
    assert not (FIXTURES / "gpt2_tokenizer" / "tokenizer.json").exists()
    assert tokenizer.is_fast
    assert len(tokenizer) == 50257 and tokenizer.eos_token == EOS and tokenizer.eos_token_id == 50256
    assert tokenizer.decode(tokenizer(" The Eagle is a pub.")["input_ids"]) == " The Eagle is a pub."


def test_loss_mask_covers_exactly_the_reference_and_eos(tokenizer):
    examples = load_nlg_dir("webnlg", NLG / "webnlg")["validation"]
    pairs = [(e.source, r) for e in examples for r in e.references]
    rows = encode_for_lm(tokenizer, examples, max_length=512)
    ids, attention, loss = rows["input_ids"], rows["attention_mask"], rows["loss_mask"]
    assert ids.shape == attention.shape == loss.shape and ids.shape[0] == len(pairs)
    assert ids.dtype == attention.dtype == loss.dtype == np.int32
    for j, (source, reference) in enumerate(pairs):
        length = int(attention[j].sum())
        assert attention[j, :length].all() and not attention[j, length:].any()  # right padding
        assert not loss[j, length:].any()
        target = np.flatnonzero(loss[j])
        start = target[0]
        assert (target == np.arange(start, length)).all()  # one block, up to the row's end
        assert tokenizer.decode(ids[j, target]) == " " + reference + EOS
        assert tokenizer.decode(ids[j, :start]) == source + EOS  # prompt + separator carry no loss
    assert (ids[attention == 0] == tokenizer.eos_token_id).all()  # GPT-2 has no pad token


def test_truncation_keeps_the_first_max_length_tokens(tokenizer):
    example = NLGExample("name : The Eagle | Type : pub", ("The Eagle is a pub in the city centre .",))
    prompt = len(tokenizer(example.source)["input_ids"]) + 1
    full = encode_for_lm(tokenizer, [example], max_length=512)
    assert full["loss_mask"].sum() == len(tokenizer(" " + example.references[0])["input_ids"]) + 1

    cut = encode_for_lm(tokenizer, [example], max_length=prompt + 3)
    assert cut["input_ids"].shape == (1, prompt + 3)
    assert (cut["input_ids"][0] == full["input_ids"][0, : prompt + 3]).all()
    assert cut["loss_mask"].sum() == 3 and cut["input_ids"][0, -1] != tokenizer.eos_token_id  # eos cut off
    assert tokenizer.decode(cut["input_ids"][0, prompt:]) == " The Eagle is"

    no_target = encode_for_lm(tokenizer, [example], max_length=prompt - 2)
    assert no_target["loss_mask"].sum() == 0 and no_target["attention_mask"].sum() == prompt - 2

    padded = encode_for_lm(tokenizer, [example], max_length=512, pad_to=64)
    assert padded["input_ids"].shape == (1, 64) and padded["loss_mask"].sum() == full["loss_mask"].sum()
    with pytest.raises(ValueError, match="pad_to=4 is shorter"):
        encode_for_lm(tokenizer, [example], max_length=512, pad_to=4)


def test_prompts_are_left_padded_and_keep_their_end(tokenizer):
    sources = ["Dublin : isPartOf : Leinster", "India : leaderName : Sumitra_Mahajan | India : capital : New_Delhi"]
    prompts = encode_prompts(tokenizer, sources, max_length=64)
    ids, attention = prompts["input_ids"], prompts["attention_mask"]
    assert (ids[:, -1] == tokenizer.eos_token_id).all()
    for j, source in enumerate(sources):
        length = int(attention[j].sum())
        assert not attention[j, : ids.shape[1] - length].any() and attention[j, ids.shape[1] - length :].all()
        assert tokenizer.decode(ids[j, ids.shape[1] - length :]) == source + EOS
    assert attention[1].all()  # the longest prompt sets the width

    cut = encode_prompts(tokenizer, sources[1:], max_length=4)
    text = tokenizer.decode(cut["input_ids"][0])
    assert cut["input_ids"].shape == (1, 4) and text.endswith(EOS) and (sources[1] + EOS).endswith(text)


def test_lm_batches_cover_every_row_once_at_bucket_widths(tokenizer):
    rows = encode_for_lm(tokenizer, load_nlg_dir("e2e", NLG / "e2e")["train"], max_length=512)
    lengths = rows["attention_mask"].sum(axis=1)
    buckets = (16, 32, 64, 512)
    seen = []
    for batch in lm_batches(rows, 8, buckets, np.random.default_rng(0), group_by_length=True):
        real = batch["weights"] > 0
        width = batch["input_ids"].shape[1]
        assert batch["input_ids"].shape == batch["loss_mask"].shape == (8, width) and width in buckets
        longest = batch["attention_mask"][real].sum(axis=1).max()
        assert width == min(b for b in buckets if b >= longest)  # the smallest bucket that holds the batch
        assert not batch["attention_mask"][~real].any() and not batch["loss_mask"][~real].any()
        for ids, attention, loss in zip(
            *(batch[k][real] for k in ("input_ids", "attention_mask", "loss_mask")), strict=True
        ):
            seen.append((tuple(ids[attention > 0]), tuple(loss[attention > 0])))
    originals = [
        (tuple(ids[attention > 0]), tuple(loss[attention > 0]))
        for ids, attention, loss in zip(rows["input_ids"], rows["attention_mask"], rows["loss_mask"], strict=True)
    ]
    assert sorted(seen) == sorted(originals)  # every row exactly once, unchanged
    plain = list(lm_batches(rows, 8, buckets))  # no rng: in order
    assert (plain[0]["input_ids"][0, : lengths[0]] == rows["input_ids"][0, : lengths[0]]).all()


def test_prompt_batches_keep_order_and_fill_the_last_batch(tokenizer):
    sources = [e.source for e in load_nlg_dir("webnlg", NLG / "webnlg")["validation"]]
    out = list(prompt_batches(tokenizer, sources, 3, max_length=128, buckets=(8, 16, 32, 64, 128)))
    assert [real for _, real in out] == [3, 3, 1]
    decoded = []
    for batch, real in out:
        assert batch["input_ids"].shape[0] == 3 and (batch["input_ids"][:, -1] == tokenizer.eos_token_id).all()
        for row, mask in zip(batch["input_ids"][:real], batch["attention_mask"][:real], strict=True):
            decoded.append(tokenizer.decode(row[mask > 0]))
        last_batch = batch
    assert decoded == [source + EOS for source in sources]
    assert (last_batch["input_ids"][1] == last_batch["input_ids"][0]).all()  # fill rows copy the first prompt


@pytest.mark.parametrize(
    ("max_length", "halves", "expected"),
    [(128, False, (32, 64, 128)), (128, True, (32, 48, 64, 96, 128)), (70, True, (32, 48, 64, 70)), (32, True, (32,))],
)
def test_length_buckets(max_length, halves, expected):
    assert length_buckets(max_length, smallest=32, halves=halves) == expected
