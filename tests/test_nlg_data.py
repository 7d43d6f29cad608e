"""Data-to-text loaders (E2E, DART, WebNLG 2017) on real rows in tests/fixtures/nlg."""

import json
import shutil
from pathlib import Path

import pytest

from pst_jax.nlg.data import (
    NLGExample,
    e2e_source_from_hub,
    examples_from_hub_rows,
    load_nlg_dir,
    load_nlg_hub,
    read_dart,
    read_e2e,
    read_webnlg,
)

FIXTURES = Path(__file__).parent / "fixtures"
NLG = FIXTURES / "nlg"


# ---------------------------------------------------------------------------------------------------------------
# Loaders: counts computed here from the raw files, and one hand-checked source per dataset
# ---------------------------------------------------------------------------------------------------------------


def _e2e_counts(path):
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return len({line.split("||")[0] for line in lines}), len(lines)


def test_e2e_splits_counts_and_source():
    splits = load_nlg_dir("e2e", NLG / "e2e")
    assert sorted(splits) == ["test", "train", "validation"]
    for split, name in [("train", "train.txt"), ("validation", "valid.txt"), ("test", "test.txt")]:
        inputs, references = _e2e_counts(NLG / "e2e" / name)
        assert len(splits[split]) == inputs
        assert sum(len(example.references) for example in splits[split]) == references
    first = splits["validation"][0]
    assert first.source == "name : Alimentum | area : city centre | family friendly : no"
    assert len(first.references) == 6
    # the trailing space of each line is stripped, as LoRA's line.strip() does
    assert first.references[0] == "There is a place in the city centre , Alimentum , that is not family - friendly ."
    assert first.references[-1] == "Alimentum in city centre is not a family - friendly place ."


def test_dart_counts_lowercased_relations_and_grouping_across_items():
    path = NLG / "dart" / "dart-v1.1.1-full-dev.json"
    items = json.loads(path.read_text(encoding="utf-8"))
    examples = read_dart(path)
    assert len(examples) == len({json.dumps(item["tripleset"]) for item in items}) == len(items) - 1
    assert sum(len(e.references) for e in examples) == sum(len(item["annotations"]) for item in items)
    assert examples[0].source == (
        "Browns Cambridge : eattype : coffee shop | Browns Cambridge : food : Chinese | "
        "Browns Cambridge : customer rating : average | Browns Cambridge : area : riverside | "
        "Browns Cambridge : familyfriendly : no | Browns Cambridge : near : Crowne Plaza Hotel"
    )
    # items 0 and 4 share their triples: their annotations form one input, in file order
    expected = [a["text"] for a in items[0]["annotations"] + items[4]["annotations"]]
    assert list(examples[0].references) == expected
    splits = load_nlg_dir("dart", NLG / "dart")
    assert sorted(splits) == ["test", "train", "validation"]


def test_webnlg_keeps_only_good_lexicalisations():
    path = NLG / "webnlg" / "dev.json"
    entries = [next(iter(e.values())) for e in json.loads(path.read_text(encoding="utf-8"))["entries"]]
    good = [[lex["lex"] for lex in e["lexicalisations"] if lex["comment"] == "good"] for e in entries]
    examples = read_webnlg(path)
    assert len(examples) == sum(1 for texts in good if texts) == len(entries) - 1
    assert [list(e.references) for e in examples] == [texts for texts in good if texts]
    assert all("Brazilians_in_Japan" not in e.source for e in examples)  # entry 3 has only toFix texts
    assert examples[0].source == "Dublin : isPartOf : Leinster"

    test = read_webnlg(NLG / "webnlg" / "test.json")
    assert test[1].source == (
        "Accademia_di_Architettura_di_Mendrisio : country : Switzerland | "
        "Accademia_di_Architettura_di_Mendrisio : dean : Mario_Botta | "
        "Accademia_di_Architettura_di_Mendrisio : city : Mendrisio | "
        "Accademia_di_Architettura_di_Mendrisio : academicStaffSize : 100"
    )
    assert len(test[2].references) == 2  # its second text is toFix
    assert test[2].references[1].startswith("The Accademia di Architettura di Mendrisio of Switzerland")
    assert sorted(load_nlg_dir("webnlg", NLG / "webnlg")) == ["test", "train", "validation"]


def test_references_grouped_by_first_appearance(tmp_path):
    path = tmp_path / "valid.txt"
    path.write_text("A : 1||a one \nB : 2||b one\n\nA : 1||a two\n", encoding="utf-8")
    assert read_e2e(path) == [NLGExample("A : 1", ("a one", "a two")), NLGExample("B : 2", ("b one",))]


# ---------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------


def _one_line_error(match, function, *args):
    with pytest.raises(ValueError, match=match) as error:
        function(*args)
    assert "\n" not in str(error.value)
    return str(error.value)


def test_missing_required_split_names_the_path(tmp_path):
    shutil.copy(NLG / "e2e" / "train.txt", tmp_path / "train.txt")
    message = _one_line_error("missing e2e validation file", load_nlg_dir, "e2e", tmp_path)
    assert str(tmp_path / "valid.txt") in message
    shutil.copy(NLG / "e2e" / "valid.txt", tmp_path / "valid.txt")
    assert sorted(load_nlg_dir("e2e", tmp_path)) == ["train", "validation"]  # test is optional
    _one_line_error("does not exist", load_nlg_dir, "e2e", tmp_path / "nowhere")
    _one_line_error("unknown NLG task 'cnn'", load_nlg_dir, "cnn", tmp_path)


def test_malformed_rows_name_file_and_row(tmp_path):
    e2e = tmp_path / "valid.txt"
    e2e.write_text("name : A||fine\nname : B without separator\n", encoding="utf-8")
    assert "line 2" in _one_line_error(str(e2e), read_e2e, e2e)

    dart = tmp_path / "dart.json"
    dart.write_text(json.dumps([{"tripleset": [["a", "B", "c"]], "annotations": []}, {"annotations": []}]))
    assert "item 1" in _one_line_error("no 'tripleset'", read_dart, dart)
    dart.write_text(json.dumps([{"tripleset": [["a", "b"]], "annotations": [{"text": "x"}]}]))
    _one_line_error("item 0 .* triple 0", read_dart, dart)
    dart.write_text("[{")
    _one_line_error("not valid JSON", read_dart, dart)

    webnlg = tmp_path / "webnlg.json"
    body = {"modifiedtripleset": [{"subject": "a", "property": "b", "object": "c"}], "lexicalisations": []}
    webnlg.write_text(json.dumps({"entries": [{"1": body}, {"3": body}]}))
    _one_line_error("entry 2: expected an object under the key '2'", read_webnlg, webnlg)
    webnlg.write_text(json.dumps({"entries": [{"1": {"lexicalisations": []}}]}))
    _one_line_error("entry 1 lacks a 'modifiedtripleset'", read_webnlg, webnlg)
    webnlg.write_text(json.dumps({"entries": [{"1": {**body, "lexicalisations": [{"lex": "x"}]}}]}))
    _one_line_error("lexicalisation 0 lacks a 'comment'", read_webnlg, webnlg)


# ---------------------------------------------------------------------------------------------------------------
# Hub rows (no network: rows written here in the hub's schema)
# ---------------------------------------------------------------------------------------------------------------


def test_hub_rows_linearise_like_the_original_files():
    e2e = load_nlg_dir("e2e", NLG / "e2e")["validation"][0]
    assert e2e_source_from_hub("name[Alimentum], area[city centre], familyFriendly[no]") == e2e.source
    assert e2e_source_from_hub("name[X], eatType[pub], priceRange[cheap], customer rating[low]") == (
        "name : X | Type : pub | price : cheap | customer rating : low"
    )

    dart_item = json.loads((NLG / "dart" / "dart-v1.1.1-full-dev.json").read_text(encoding="utf-8"))[0]
    row = {
        "tripleset": dart_item["tripleset"],
        "annotations": {"source": ["e2e"], "text": [dart_item["annotations"][0]["text"]]},
    }
    dart = read_dart(NLG / "dart" / "dart-v1.1.1-full-dev.json")[0]
    assert examples_from_hub_rows("dart", [row]) == [NLGExample(dart.source, dart.references[:1])]

    row = {
        "modified_triple_sets": {
            "mtriple_set": [["India | leaderName | Sumitra_Mahajan", "India | capital | New_Delhi"]]
        },
        "lex": {"comment": ["good", "toFix", "good"], "text": ["one", "bad", "two"], "lid": ["Id1", "Id2", "Id3"]},
    }
    assert examples_from_hub_rows("webnlg", [row]) == [
        NLGExample("India : leaderName : Sumitra_Mahajan | India : capital : New_Delhi", ("one", "two"))
    ]


def test_hub_loader_maps_splits_and_rows(monkeypatch):
    """load_nlg_hub on a stand-in for datasets.load_dataset (the hub is unreachable in tests)."""
    import datasets

    rows = {
        "train": [{"meaning_representation": "name[Aromi], eatType[coffee shop]", "human_reference": " Aromi. "}],
        "validation": [
            {"meaning_representation": "name[X], area[riverside]", "human_reference": "X is by the river."},
            {"meaning_representation": "name[X], area[riverside]", "human_reference": "X: riverside."},
        ],
    }
    calls = []

    def load_dataset(repo, config=None, cache_dir=None):
        calls.append((repo, config))
        return datasets.DatasetDict({split: datasets.Dataset.from_list(r) for split, r in rows.items()})

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    splits = load_nlg_hub("e2e")
    assert calls == [("tuetschek/e2e_nlg", None)] and sorted(splits) == ["train", "validation"]  # no test split
    assert splits["train"] == [NLGExample("name : Aromi | Type : coffee shop", ("Aromi.",))]
    assert splits["validation"] == [NLGExample("name : X | area : riverside", ("X is by the river.", "X: riverside."))]

    del rows["validation"]
    with pytest.raises(ValueError, match=r"lacks the splits \['validation'\]"):
        load_nlg_hub("e2e")
