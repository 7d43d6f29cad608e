"""Corpus-level, multi-reference scores of generated text: BLEU, NIST, METEOR, ROUGE-L, CIDEr, TER.

The PST paper reports, as LoRA did, BLEU, NIST, METEOR, ROUGE-L and CIDEr on E2E and BLEU, METEOR and
TER on DART and WebNLG. Every score comes from a maintained package; nothing is re-implemented here:

============  =========================================================================  ============
metric        package and settings                                                       scale
============  =========================================================================  ============
BLEU          sacrebleu ``BLEU`` (13a tokens, exponential smoothing)                     0-100
TER           sacrebleu ``TER`` (case-insensitive, its default)                          0-100+
ROUGE_L       rouge-score ``rougeL`` F-measure, best reference per segment, averaged     0-100
NIST          nltk ``corpus_nist`` (n=5) over sacrebleu 13a tokens                       0-~15
METEOR        pycocoevalcap's METEOR 1.5 (``meteor-1.5.jar -l en -norm``); needs java    0-100
CIDEr         pycocoevalcap ``Cider`` (CIDEr-D, n=4, sigma=6) over lowercased 13a tokens  0-10
============  =========================================================================  ============

CIDEr weighs n-grams by their rarity among the corpus's references: a corpus of one input scores 0.

METEOR is the jar that both evaluation scripts LoRA runs use (e2e-metrics for E2E, WebNLG's
GenerationEval ``eval.py`` for DART and WebNLG), shipped with its paraphrase table inside pycocoevalcap;
it runs only where a ``java`` executable is on ``PATH``, else the result says so under ``not_computed``.
nltk's own METEOR is not used: it needs the WordNet corpus, which no maintained PyPI package ships
(nltk downloads it at run time).

How these differ from those scripts (so compare only with scores computed the same way): e2e-metrics
matches BLEU and NIST case-insensitively (pass ``lowercase=True``) and clips NIST against all
references at once, whereas nltk's NIST scores each segment against its single best reference;
it computes ROUGE-L (beta 1.2) and CIDEr with pycocoevalcap on PTB-tokenised, lowercased text.
GenerationEval computes BLEU with ``multi-bleu-detok.perl``, METEOR on nltk-tokenised text, and TER
with pyter per segment (best reference), averaged over segments and reported as a fraction, where
sacrebleu's TER here is corpus-level in percent.

Example:
  >>> result = score(["the cat sat on the mat"], [["the cat sat on the mat", "a cat sat"]], metrics=["BLEU"])
  >>> result["BLEU"], sorted(result["not_computed"])
  (100.00000000000004, ['CIDEr', 'METEOR', 'NIST', 'ROUGE_L', 'TER'])
"""

import importlib.metadata
import shutil
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
import sacrebleu
from nltk.translate.nist_score import corpus_nist
from pycocoevalcap.cider.cider import Cider
from rouge_score.rouge_scorer import RougeScorer
from sacrebleu.metrics import BLEU, TER
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

METRICS: tuple[str, ...] = ("BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr", "TER")
NIST_ORDER = 5


def _version(package: str) -> str:
    return f"{package} {importlib.metadata.version(package)}"


def lora_postprocess(text: str) -> str:
    """A decoded generation or a reference as LoRA's ``gpt2_decode.py`` scores it.

    Keeps what precedes the first ``<|endoftext|>`` and the first blank line, stripped.

    Example:
      >>> lora_postprocess(" The Eagle is a pub. <|endoftext|>name : x")
      'The Eagle is a pub.'
    """
    return text.split("<|endoftext|>")[0].split("\n\n")[0].strip()


def _check(hypotheses: Sequence[str], references: Sequence[Sequence[str]], metrics: Collection[str]) -> None:
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; expected some of {', '.join(METRICS)}")
    if not hypotheses or len(hypotheses) != len(references):
        raise ValueError(
            f"{len(hypotheses)} hypotheses for {len(references)} reference lists; give one list per hypothesis"
        )
    for i, (hypothesis, refs) in enumerate(zip(hypotheses, references, strict=True)):
        if not isinstance(hypothesis, str) or isinstance(refs, str):
            raise ValueError(f"segment {i}: expected a hypothesis string and a list of reference strings")
        if not refs or not all(isinstance(r, str) and r.strip() for r in refs):
            raise ValueError(f"segment {i} has no references or an empty one; every segment needs 1+ references")


def _reference_streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    # sacrebleu wants one stream per reference position; None fills the segments with fewer references.
    width = max(len(refs) for refs in references)
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(width)]


def _rouge_l(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    scorer = RougeScorer(["rougeL"])
    pairs = zip(hypotheses, references, strict=True)
    best = [scorer.score_multi(list(refs), hyp)["rougeL"].fmeasure for hyp, refs in pairs]
    return 100.0 * float(np.mean(best))


def _meteor(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    from pycocoevalcap.meteor.meteor import Meteor  # starts a JVM: import only when asked for

    def line(text: str) -> str:  # the jar reads one line per segment, '|||' separating fields
        return " ".join(text.replace("|||", " ").split())

    meteor = Meteor()
    try:
        gts = {i: [line(r) for r in refs] for i, refs in enumerate(references)}
        score, _ = meteor.compute_score(gts, {i: [line(h)] for i, h in enumerate(hypotheses)})
    finally:
        process = meteor.meteor_p
        process.stdin.close()
        process.kill()
        process.wait()
    return 100.0 * float(score)


def score(
    hypotheses: Sequence[str],
    references: Sequence[Sequence[str]],
    metrics: Collection[str] = METRICS,
    lowercase: bool = False,
) -> dict[str, Any]:
    """Corpus scores of ``hypotheses`` against their references (any number per segment, at least one).

    Args:
      hypotheses: one generated text per input.
      references: the reference texts of each input (``NLGExample.references``).
      metrics: which of :data:`METRICS` to compute; METEOR starts a JVM (about 15 s on 2 cores).
      lowercase: lowercase before BLEU and NIST, like the E2E challenge's scripts (TER, ROUGE-L, METEOR
        and CIDEr ignore case anyway).

    Returns:
      ``{metric: value}`` for each computed metric (scales in the module docstring), ``"computed_by"``
      (``{metric: package, version and settings}``), ``"not_computed"`` (``{metric: why}``, also for
      metrics not asked for) and ``"segments"`` (the number of inputs).

    Raises:
      ValueError: for an unknown metric, mismatched lengths or a segment without a non-empty reference.
    """
    _check(hypotheses, references, metrics)
    hypotheses, references = list(hypotheses), [list(refs) for refs in references]
    result: dict[str, Any] = {}
    computed_by: dict[str, str] = {}
    not_computed = {name: "not requested" for name in METRICS if name not in metrics}
    tokenize = Tokenizer13a()

    def tokens(text: str, lower: bool) -> list[str]:
        return tokenize(text.lower() if lower else text).split()

    if "BLEU" in metrics:
        bleu = BLEU(lowercase=lowercase)
        result["BLEU"] = bleu.corpus_score(hypotheses, _reference_streams(references)).score
        computed_by["BLEU"] = f"sacrebleu {sacrebleu.__version__} ({bleu.get_signature()})"
    if "TER" in metrics:
        ter = TER()
        result["TER"] = ter.corpus_score(hypotheses, _reference_streams(references)).score
        computed_by["TER"] = f"sacrebleu {sacrebleu.__version__} ({ter.get_signature()})"
    if "ROUGE_L" in metrics:
        result["ROUGE_L"] = _rouge_l(hypotheses, references)
        computed_by["ROUGE_L"] = f"{_version('rouge-score')} (rougeL F-measure, best reference per segment, mean)"
    if "NIST" in metrics:
        try:
            result["NIST"] = corpus_nist(
                [[tokens(r, lowercase) for r in refs] for refs in references],
                [tokens(h, lowercase) for h in hypotheses],
                n=NIST_ORDER,
            )
            computed_by["NIST"] = f"{_version('nltk')} (corpus_nist n={NIST_ORDER}, sacrebleu 13a tokens)"
        except ZeroDivisionError:
            not_computed["NIST"] = f"no hypothesis has {NIST_ORDER} tokens: nltk's NIST divides by zero"
    if "CIDEr" in metrics:
        gts = {i: [" ".join(tokens(r, True)) for r in refs] for i, refs in enumerate(references)}
        res = {i: [" ".join(tokens(h, True))] for i, h in enumerate(hypotheses)}
        result["CIDEr"] = float(Cider().compute_score(gts, res)[0])
        computed_by["CIDEr"] = f"{_version('pycocoevalcap')} (Cider: CIDEr-D, lowercased sacrebleu 13a tokens)"
    if "METEOR" in metrics:
        java = shutil.which("java")
        if java is None:
            not_computed["METEOR"] = "no java on PATH: pycocoevalcap's meteor-1.5.jar needs a Java runtime"
        else:
            try:
                result["METEOR"] = _meteor(hypotheses, references)
                computed_by["METEOR"] = f"{_version('pycocoevalcap')} (meteor-1.5.jar -l en -norm, {java})"
            except (OSError, ValueError) as error:
                not_computed["METEOR"] = f"meteor-1.5.jar failed: {error}"
    result["computed_by"] = computed_by
    result["not_computed"] = not_computed
    result["segments"] = len(hypotheses)
    return result
