"""Corpus metrics for data-to-text generation, against values known independently of this code."""

import math
import shutil

import pytest

from pst_jax.nlg.metrics import METRICS, lora_postprocess, score

FAST = [name for name in METRICS if name != "METEOR"]  # METEOR starts a JVM: tested once, below

# Distinct sentences, so that CIDEr's idf (computed over the references) is not zero everywhere.
SENTENCES = [
    "The Eagle is a cheap coffee shop near Burger King .",
    "Alimentum is not a family - friendly place , located in city centre .",
    "Blue Spice serves Chinese food by the riverside .",
    "Aarhus Airport has a runway length of 2702.0 .",
]


def test_identical_hypotheses_and_references_score_perfectly():
    result = score(SENTENCES, [[s] for s in SENTENCES], metrics=FAST)
    assert result["BLEU"] == pytest.approx(100.0)
    assert result["TER"] == 0.0
    assert result["ROUGE_L"] == pytest.approx(100.0)
    assert result["CIDEr"] == pytest.approx(10.0)  # CIDEr-D's maximum: 10 x mean cosine similarity of 1
    assert set(result["computed_by"]) == set(FAST) and result["segments"] == len(SENTENCES)
    assert result["not_computed"] == {"METEOR": "not requested"}
    assert "sacrebleu" in result["computed_by"]["BLEU"] and "pycocoevalcap" in result["computed_by"]["CIDEr"]
    assert "nltk" in result["computed_by"]["NIST"] and "rouge-score" in result["computed_by"]["ROUGE_L"]


def test_nist_of_a_perfect_segment_is_its_information():
    # One segment of k distinct words scored against itself: each unigram carries log2(k / 1) bits,
    # every longer n-gram log2(1 / 1) = 0 bits (Doddington 2002), and there is no length penalty.
    words = "alpha beta gamma delta epsilon zeta eta theta"
    assert score([words], [[words]], metrics=["NIST"])["NIST"] == pytest.approx(math.log2(8))


def test_sacrebleu_readme_example():
    # sacrebleu's README: two reference streams, BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ...)
    refs = [
        ["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
        ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."],
    ]
    hyps = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
    per_segment = [list(segment) for segment in zip(*refs, strict=True)]
    result = score(hyps, per_segment, metrics=["BLEU"])
    assert round(result["BLEU"], 2) == 48.53
    assert "nrefs:2" in result["computed_by"]["BLEU"]


def test_bleu_by_hand():
    # "the cat sat on the mat" against "the cat sat on a mat": clipped n-gram precisions 5/6 ("the" counts
    # once), 3/5, 2/4 and 1/3; equal lengths, so no brevity penalty. BLEU = (5/6 * 3/5 * 2/4 * 1/3) ** (1/4).
    expected = 100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    assert score(["the cat sat on the mat"], [["the cat sat on a mat"]], metrics=["BLEU"])["BLEU"] == pytest.approx(
        expected
    )


def test_variable_number_of_references():
    hyps = ["The dog bit the man.", "It wasn't surprising."]
    refs = [["The dog bit the man."], ["It was not unexpected.", "No one was surprised.", "It wasn't surprising."]]
    result = score(hyps, refs, metrics=["BLEU", "TER"])
    assert result["BLEU"] == pytest.approx(100.0) and result["TER"] == 0.0  # each matches one of its references


def test_rouge_l_takes_the_best_reference():
    # LCS("the cat sat on a mat", "the cat sat on the mat") = 5 of 6 tokens each way: F = 5/6.
    # LCS with "a cat is here" is 1 token: P = 1/6, R = 1/4, F = 0.2. The best, 5/6, must be kept.
    hyp = ["the cat sat on a mat"]
    for refs in (["the cat sat on the mat", "a cat is here"], ["a cat is here", "the cat sat on the mat"]):
        assert score(hyp, [refs], metrics=["ROUGE_L"])["ROUGE_L"] == pytest.approx(100 * 5 / 6)
    assert score(hyp, [["a cat is here"]], metrics=["ROUGE_L"])["ROUGE_L"] == pytest.approx(20.0)


def test_lowercase_applies_to_bleu():
    assert score(["THE DOG BIT THE MAN ."], [["the dog bit the man ."]], metrics=["BLEU"])["BLEU"] < 10
    lowered = score(["THE DOG BIT THE MAN ."], [["the dog bit the man ."]], metrics=["BLEU"], lowercase=True)
    assert lowered["BLEU"] == pytest.approx(100.0) and "case:lc" in lowered["computed_by"]["BLEU"]


def test_meteor_without_java_is_reported_not_computed(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no java there
    result = score(SENTENCES, [[s] for s in SENTENCES], metrics=["METEOR", "BLEU"])
    assert "METEOR" not in result and "java" in result["not_computed"]["METEOR"]
    assert result["BLEU"] == pytest.approx(100.0)


@pytest.mark.skipif(shutil.which("java") is None, reason="METEOR 1.5 needs a java executable on PATH")
def test_meteor_jar_scores_identical_text_100():
    result = score(SENTENCES, [[s, "An unrelated sentence ."] for s in SENTENCES], metrics=["METEOR"])
    assert result["METEOR"] == pytest.approx(100.0)
    assert "meteor-1.5.jar" in result["computed_by"]["METEOR"]


def test_bad_inputs_raise_one_line_errors():
    cases = [
        (["a"], [["a"], ["b"]], "1 hypotheses for 2 reference lists"),
        (["a"], [[]], "segment 0 has no references"),
        (["a"], [["  "]], "segment 0 has no references or an empty one"),
        (["a"], ["a"], "segment 0: expected a hypothesis string and a list"),
        ([], [], "0 hypotheses"),
    ]
    for hyps, refs, message in cases:
        with pytest.raises(ValueError, match=message) as error:
            score(hyps, refs, metrics=["BLEU"])
        assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="unknown metrics \\['SPICE'\\]"):
        score(["a"], [["a"]], metrics=["SPICE"])


def test_lora_postprocess():
    assert lora_postprocess(" The Eagle is a pub . <|endoftext|>name : x") == "The Eagle is a pub ."
    assert lora_postprocess("First paragraph.\n\nSecond one.") == "First paragraph."
