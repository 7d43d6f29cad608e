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
from collections.abc import Callable, Collection, Sequence
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


class _NotComputed(Exception):
    """A metric that cannot be computed here; the message says why (reported under ``not_computed``)."""


#: ``(text, lower) -> sacrebleu 13a tokens``.
Tokens = Callable[[str, bool], list[str]]
#: ``(hypotheses, references, lowercase, tokens) -> (value, computed_by)``; raises :class:`_NotComputed`.
Scorer = Callable[[list[str], list[list[str]], bool, Tokens], tuple[float, str]]


def _tokens(tokenize: Tokenizer13a) -> Tokens:
    def tokens(text: str, lower: bool) -> list[str]:
        return tokenize(text.lower() if lower else text).split()

    return tokens


def _bleu(hypotheses: list[str], references: list[list[str]], lowercase: bool, tokens: Tokens) -> tuple[float, str]:
    bleu = BLEU(lowercase=lowercase)
    value = bleu.corpus_score(hypotheses, _reference_streams(references)).score
    return value, f"sacrebleu {sacrebleu.__version__} ({bleu.get_signature()})"


def _ter(hypotheses: list[str], references: list[list[str]], lowercase: bool, tokens: Tokens) -> tuple[float, str]:
    ter = TER()
    value = ter.corpus_score(hypotheses, _reference_streams(references)).score
    return value, f"sacrebleu {sacrebleu.__version__} ({ter.get_signature()})"


def _rouge_l_scorer(
    hypotheses: list[str], references: list[list[str]], lowercase: bool, tokens: Tokens
) -> tuple[float, str]:
    value = _rouge_l(hypotheses, references)
    return value, f"{_version('rouge-score')} (rougeL F-measure, best reference per segment, mean)"


def _nist(hypotheses: list[str], references: list[list[str]], lowercase: bool, tokens: Tokens) -> tuple[float, str]:
    try:
        value = corpus_nist(
            [[tokens(r, lowercase) for r in refs] for refs in references],
            [tokens(h, lowercase) for h in hypotheses],
            n=NIST_ORDER,
        )
    except ZeroDivisionError:
        raise _NotComputed(f"no hypothesis has {NIST_ORDER} tokens: nltk's NIST divides by zero") from None
    return value, f"{_version('nltk')} (corpus_nist n={NIST_ORDER}, sacrebleu 13a tokens)"


def _cider(hypotheses: list[str], references: list[list[str]], lowercase: bool, tokens: Tokens) -> tuple[float, str]:
    gts = {i: [" ".join(tokens(r, True)) for r in refs] for i, refs in enumerate(references)}
    res = {i: [" ".join(tokens(h, True))] for i, h in enumerate(hypotheses)}
    value = float(Cider().compute_score(gts, res)[0])
    return value, f"{_version('pycocoevalcap')} (Cider: CIDEr-D, lowercased sacrebleu 13a tokens)"


def _meteor_scorer(
    hypotheses: list[str], references: list[list[str]], lowercase: bool, tokens: Tokens
) -> tuple[float, str]:
    java = shutil.which("java")
    if java is None:
        raise _NotComputed("no java on PATH: pycocoevalcap's meteor-1.5.jar needs a Java runtime")
    try:
        value = _meteor(hypotheses, references)
    except (OSError, ValueError) as error:
        raise _NotComputed(f"meteor-1.5.jar failed: {error}") from error
    return value, f"{_version('pycocoevalcap')} (meteor-1.5.jar -l en -norm, {java})"


#: Every metric's scorer, in the order :func:`score` computes them (METEOR last: it starts a JVM).
_SCORERS: dict[str, Scorer] = {
    "BLEU": _bleu,
    "TER": _ter,
    "ROUGE_L": _rouge_l_scorer,
    "NIST": _nist,
    "CIDEr": _cider,
    "METEOR": _meteor_scorer,
}


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
    tokens = _tokens(Tokenizer13a())
    for name, scorer in _SCORERS.items():
        if name not in metrics:
            continue
        try:
            result[name], computed_by[name] = scorer(hypotheses, references, lowercase, tokens)
        except _NotComputed as why:
            not_computed[name] = str(why)
    result["computed_by"] = computed_by
    result["not_computed"] = not_computed
    result["segments"] = len(hypotheses)
    return result
