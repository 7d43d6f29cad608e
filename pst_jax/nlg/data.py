"""Data-to-text datasets for GPT-2 (E2E, DART, WebNLG 2017), from their original files or the hub.

Inputs are linearised and joined to their references exactly as the LoRA NLG code does (microsoft/LoRA,
``examples/NLG``; the PST paper's GPT-2 experiments use that setup):

- E2E (``src/format_converting_e2e.py``): each ``meaning representation||reference`` line is stripped and
  split at ``||``; the meaning representation is the source as written (``name : Alimentum | area : city
  centre | family friendly : no``).
- DART (``src/format_converting_dart.py``): the triples as ``subject : relation : object`` joined by
  ``" | "``, with the relation lowercased (``Browns Cambridge : eattype : coffee shop | ...``); one
  reference per annotation ``text``.
- WebNLG 2017 (``src/format_converting_webnlg.py``): the ``modifiedtripleset`` of entry ``i`` (the key
  ``str(i + 1)``) as ``subject : property : object`` joined by ``" | "``, nothing lowercased; only the
  lexicalisations whose ``comment`` is ``"good"`` are references (``"toFix"`` ones are dropped). The
  category only feeds LoRA's seen/unseen evaluation filter, not the source text, so it is not kept.

References of identical sources are grouped into one :class:`NLGExample`, in order of first appearance,
as LoRA's ``src/gpt2_decode.py`` groups them for multi-reference scoring. An input left without any
reference (a WebNLG entry with only ``toFix`` texts, a DART item with no annotation) has no training row
in LoRA either and is dropped.

Token rows for the language model are made by :mod:`pst_jax.nlg.rows`.
"""

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pst_jax.data.text_files import utf8_errors

TASKS: tuple[str, ...] = ("e2e", "dart", "webnlg")

# File of each split in each dataset's original layout (as in LoRA's create_datasets.sh).
SPLIT_FILES: dict[str, dict[str, str]] = {
    "e2e": {"train": "train.txt", "validation": "valid.txt", "test": "test.txt"},
    "dart": {
        "train": "dart-v1.1.1-full-train.json",
        "validation": "dart-v1.1.1-full-dev.json",
        "test": "dart-v1.1.1-full-test.json",
    },
    "webnlg": {"train": "train.json", "validation": "dev.json", "test": "test.json"},
}
REQUIRED_SPLITS: tuple[str, ...] = ("train", "validation")

# Hub dataset id, config and the hub's name of each split.
HUB_DATASETS: dict[str, tuple[str, str | None, dict[str, str]]] = {
    "e2e": ("tuetschek/e2e_nlg", None, {"train": "train", "validation": "validation", "test": "test"}),
    "dart": ("Yale-LILY/dart", None, {"train": "train", "validation": "validation", "test": "test"}),
    "webnlg": (
        "webnlg-challenge/web_nlg",
        "webnlg_challenge_2017",
        {"train": "train", "validation": "dev", "test": "test"},
    ),
}
# Attribute names of the E2E CSV (as on the hub) -> names in the LoRA E2E files; others are unchanged.
E2E_HUB_ATTRIBUTES: dict[str, str] = {"eatType": "Type", "priceRange": "price", "familyFriendly": "family friendly"}
_E2E_HUB_SLOT = re.compile(r"\s*([^\[\],]+?)\s*\[([^\]]*)\]\s*(?:,|$)")


@dataclass(frozen=True)
class NLGExample:
    """One input of a data-to-text dataset and all its references.

    Attributes:
      source: the linearised input, used as the prompt.
      references: every reference text for that input, in file order.
    """

    source: str
    references: tuple[str, ...]


def group_references(pairs: Iterable[tuple[str, str]]) -> list[NLGExample]:
    """Groups ``(source, reference)`` pairs by identical source, in order of first appearance.

    Example:
      >>> group_references([("a", "x"), ("b", "y"), ("a", "z")])
      [NLGExample(source='a', references=('x', 'z')), NLGExample(source='b', references=('y',))]
    """
    grouped: dict[str, list[str]] = {}
    for source, reference in pairs:
        grouped.setdefault(source, []).append(reference)
    return [NLGExample(source, tuple(references)) for source, references in grouped.items()]


def linearise_triples(triples: Iterable[Sequence[str]], lowercase_relation: bool) -> str:
    """``subject : relation : object`` for each triple, joined by ``" | "`` (LoRA's DART and WebNLG format).

    Example:
      >>> linearise_triples([("Aarhus", "leaderName", "Jacob_Bundsgaard"), ("Aarhus", "country", "Denmark")], False)
      'Aarhus : leaderName : Jacob_Bundsgaard | Aarhus : country : Denmark'
    """
    return " | ".join(f"{s} : {r.lower() if lowercase_relation else r} : {o}" for s, r, o in triples)


# ---------------------------------------------------------------------------------------------------------------
# The original files
# ---------------------------------------------------------------------------------------------------------------


def read_e2e(path: str | Path) -> list[NLGExample]:
    """An E2E file of ``meaning representation||reference`` lines (blank lines are skipped).

    Raises:
      ValueError: for a line without exactly one ``||`` or with an empty side.
    """
    pairs = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            text = line.strip()
            if not text:
                continue
            parts = text.split("||")
            if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
                raise ValueError(
                    f"{path} line {number}: expected 'meaning representation||reference', found {text[:80]!r}; "
                    "fix or delete the line"
                )
            pairs.append((parts[0], parts[1]))
    return group_references(pairs)


def _load_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON ({error}); give the dataset's original file") from None


def _triple(value: Any, where: str) -> tuple[str, str, str]:
    if not (isinstance(value, list | tuple) and len(value) == 3 and all(isinstance(v, str) for v in value)):
        raise ValueError(f"{where}: expected [subject, relation, object] strings, found {value!r}")
    return value[0], value[1], value[2]


def read_dart(path: str | Path) -> list[NLGExample]:
    """A DART JSON file: a list of items with a ``tripleset`` and ``annotations`` (each with a ``text``).

    Raises:
      ValueError: for an item without a non-empty ``tripleset`` or ``annotations`` list, or a bad triple.
    """
    items = _load_json(path)
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a JSON list of DART items, found a {type(items).__name__}")
    pairs = []
    for index, item in enumerate(items):
        where = f"{path} item {index} (0-based)"
        triples = item.get("tripleset") if isinstance(item, dict) else None
        if not isinstance(triples, list) or not triples:
            raise ValueError(f"{where} has no 'tripleset' list of triples; fix or delete the item")
        annotations = item.get("annotations")
        if not isinstance(annotations, list):
            raise ValueError(f"{where} has no 'annotations' list; fix or delete the item")
        source = linearise_triples(
            [_triple(t, f"{where} triple {j}") for j, t in enumerate(triples)], lowercase_relation=True
        )
        for j, annotation in enumerate(annotations):
            if not isinstance(annotation, dict) or not isinstance(annotation.get("text"), str):
                raise ValueError(f"{where} annotation {j} has no 'text' string; fix or delete it")
            pairs.append((source, annotation["text"]))
    return group_references(pairs)


def read_webnlg(path: str | Path) -> list[NLGExample]:
    """A WebNLG 2017 JSON file ``{"entries": [{"1": {...}}, {"2": {...}}, ...]}`` (LoRA's format).

    Raises:
      ValueError: for an entry not keyed by its 1-based position, or without a ``modifiedtripleset`` of
        ``subject``/``property``/``object`` objects or a ``lexicalisations`` list of ``comment``/``lex``.
    """
    data = _load_json(path)
    entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a JSON object with an 'entries' list (WebNLG 2017 format)")
    pairs = []
    for index, entry in enumerate(entries):
        key = str(index + 1)
        where = f"{path} entry {key}"
        body = entry.get(key) if isinstance(entry, dict) else None
        if not isinstance(body, dict):
            found = list(entry) if isinstance(entry, dict) else type(entry).__name__
            raise ValueError(f"{where}: expected an object under the key {key!r} (entries in order), found {found}")
        triples, lexicalisations = body.get("modifiedtripleset"), body.get("lexicalisations")
        if not isinstance(triples, list) or not triples or not isinstance(lexicalisations, list):
            raise ValueError(f"{where} lacks a 'modifiedtripleset' or 'lexicalisations' list; fix or delete it")
        names = ("subject", "property", "object")
        rows = []
        for j, triple in enumerate(triples):
            values = [triple.get(name) for name in names] if isinstance(triple, dict) else triple
            rows.append(_triple(values, f"{where} triple {j} ({'/'.join(names)})"))
        source = linearise_triples(rows, lowercase_relation=False)
        for j, lex in enumerate(lexicalisations):
            if not isinstance(lex, dict) or not isinstance(lex.get("lex"), str) or "comment" not in lex:
                raise ValueError(f"{where} lexicalisation {j} lacks a 'comment' or a 'lex' string; fix or delete it")
            if lex["comment"] == "good":
                pairs.append((source, lex["lex"]))
    return group_references(pairs)


READERS = {"e2e": read_e2e, "dart": read_dart, "webnlg": read_webnlg}


def read_split(task: str, split: str, path: str | Path) -> list[NLGExample]:
    """The examples of one split's file; ``ValueError`` for a malformed row, a byte that is not UTF-8 (naming its
    line), or no example with a reference."""
    with utf8_errors(path):
        examples = READERS[task](path)
    if not examples:
        raise ValueError(f"{task} {split} file {path} holds no examples (no input with a reference); fill it")
    return examples


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown NLG task {task!r}; expected one of {', '.join(TASKS)}")


def load_nlg_dir(task: str, data_dir: str | Path) -> dict[str, list[NLGExample]]:
    """The splits of ``task`` found in ``data_dir``, in the dataset's original layout (:data:`SPLIT_FILES`).

    Returns ``train`` and ``validation`` (required) and ``test`` where its file exists.

    Raises:
      ValueError: for an unknown task, a missing folder or required file, or a malformed row.

    Example:
      >>> splits = load_nlg_dir("e2e", "tests/fixtures/nlg/e2e")
      >>> sorted(splits), splits["validation"][0].source
      (['test', 'train', 'validation'], 'name : Alimentum | area : city centre | family friendly : no')
    """
    _check_task(task)
    folder = Path(data_dir)
    if not folder.is_dir():
        raise ValueError(f"{task} data_dir {str(folder)!r} does not exist; pass the folder that holds its files")
    splits = {}
    for split, name in SPLIT_FILES[task].items():
        path = folder / name
        if path.is_file():
            splits[split] = read_split(task, split, path)
        elif split in REQUIRED_SPLITS:
            raise ValueError(f"missing {task} {split} file: expected {path}")
    return splits


# ---------------------------------------------------------------------------------------------------------------
# The Hugging Face hub
# ---------------------------------------------------------------------------------------------------------------


def e2e_source_from_hub(meaning_representation: str) -> str:
    """An E2E CSV meaning representation (``name[X], eatType[Y]``) in the LoRA file format.

    Attribute names are mapped (:data:`E2E_HUB_ATTRIBUTES`); values are kept as written, so they are not
    tokenised like the LoRA files (``£20-25`` there is ``£ 20 - 25``).

    Example:
      >>> e2e_source_from_hub("name[Alimentum], area[city centre], familyFriendly[no]")
      'name : Alimentum | area : city centre | family friendly : no'
    """
    slots = _E2E_HUB_SLOT.findall(meaning_representation)
    if not slots:
        raise ValueError(f"bad E2E meaning representation {meaning_representation!r}; expected 'name[X], ...'")
    return " | ".join(f"{E2E_HUB_ATTRIBUTES.get(name, name)} : {value}" for name, value in slots)


def _columns(value: Any, key: str) -> list[Any]:
    # The hub's sequences of structs come as a dict of lists; plain JSON as a list of dicts.
    return list(value[key]) if isinstance(value, Mapping) else [item[key] for item in value]


def examples_from_hub_rows(task: str, rows: Iterable[Mapping[str, Any]]) -> list[NLGExample]:
    """:class:`NLGExample` s from rows in the hub's schema of ``task`` (see :func:`load_nlg_hub`).

    E2E rows have ``meaning_representation`` and ``human_reference``; DART rows ``tripleset`` and
    ``annotations`` (``text``); WebNLG rows ``modified_triple_sets`` (``mtriple_set``: ``"s | p | o"``
    strings) and ``lex`` (``comment``, ``text``), of which the ``"good"`` texts are kept, and those with
    an empty comment (in case a split has no comments).

    Example:
      >>> rows = [{"meaning_representation": "name[Aromi], eatType[coffee shop]", "human_reference": "Aromi."}]
      >>> examples_from_hub_rows("e2e", rows)
      [NLGExample(source='name : Aromi | Type : coffee shop', references=('Aromi.',))]
    """
    _check_task(task)
    pairs = []
    for row in rows:
        if task == "e2e":
            pairs.append((e2e_source_from_hub(row["meaning_representation"]), row["human_reference"].strip()))
        elif task == "dart":
            source = linearise_triples(row["tripleset"], lowercase_relation=True)
            pairs.extend((source, text) for text in _columns(row["annotations"], "text"))
        else:
            triples = [t.split(" | ") for t in _columns(row["modified_triple_sets"], "mtriple_set")[0]]
            source = linearise_triples(triples, lowercase_relation=False)
            lex = row["lex"]
            texts = zip(_columns(lex, "comment"), _columns(lex, "text"), strict=True)
            pairs.extend((source, text) for comment, text in texts if comment in ("good", ""))
    return group_references(pairs)


def load_nlg_hub(task: str, cache_dir: str | None = None) -> dict[str, list[NLGExample]]:
    """``task`` from the Hugging Face hub (:data:`HUB_DATASETS`), or from the local ``datasets`` cache.

    Best effort and untested here (the hub was unreachable where this was written): the ids and columns
    are those of the hub's dataset cards, and these repositories were built by loading scripts, which
    ``datasets`` 4+ no longer runs, so a load may fail. Prefer :func:`load_nlg_dir` with the original
    files, which is what LoRA used: the hub's E2E text is not tokenised like LoRA's files, and its
    WebNLG 2017 test split mixes several test sets. Check :func:`~pst_jax.data.hub.hub_reachable` first.

    Example:
      >>> sorted(load_nlg_hub("dart"))  # doctest: +SKIP
      ['test', 'train', 'validation']
    """
    import datasets  # a slow import, needed only here

    _check_task(task)
    repo, config, hub_splits = HUB_DATASETS[task]
    raw = datasets.load_dataset(repo, config, cache_dir=cache_dir)
    missing = [hub_splits[split] for split in REQUIRED_SPLITS if hub_splits[split] not in raw]
    if missing:
        raise ValueError(f"{repo} lacks the splits {missing}; found {list(raw)}")
    return {split: examples_from_hub_rows(task, raw[name]) for split, name in hub_splits.items() if name in raw}


def load_nlg_files(task: str, files: Mapping[str, str | Path | None]) -> dict[str, list[NLGExample]]:
    """The splits of ``task`` from one file each (``{"train": path, "validation": path, "test": path}``).

    Any file name works (the E2E ``valid.txt`` can serve as a training file); ``None`` entries are skipped.

    Raises:
      ValueError: for an unknown task, a missing required split or file, or a malformed row.
    """
    _check_task(task)
    missing = [split for split in REQUIRED_SPLITS if not files.get(split)]
    if missing:
        raise ValueError(f"{task} needs a {' and a '.join(missing)} file")
    splits = {}
    for split, path in files.items():
        if path is None:
            continue
        if not Path(path).is_file():
            raise ValueError(f"{task} {split} file {path} does not exist")
        splits[split] = read_split(task, split, path)
    return splits
