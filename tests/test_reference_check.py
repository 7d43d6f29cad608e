"""experiments.reference_check without torch: its input checks, batch order and name mapping."""

import sys

import numpy as np
import pytest

from experiments import reference_check


def args_for(tmp_path, **overrides):
    argv = ["--reference_dir", str(tmp_path), "--torch_python", sys.executable]
    for name, value in overrides.items():
        argv += [f"--{name}", str(value)]
    return reference_check.parse_args(argv)


def test_a_folder_without_the_authors_package_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit, match=r"^error: --reference_dir .* has no pst/sparse.py"):
        reference_check.check_args(args_for(tmp_path))


def test_a_python_without_torch_is_a_one_line_error(tmp_path):
    (tmp_path / "pst").mkdir()
    for name in ("sparse.py", "utils.py"):
        (tmp_path / "pst" / name).write_text("")
    args = args_for(tmp_path)
    args.torch_python = str(tmp_path / "no-such-python")
    with pytest.raises(SystemExit, match=r"^error: --torch_python .* cannot import torch and transformers$"):
        reference_check.check_args(args)


def test_batch_order_is_a_fresh_permutation_per_epoch_without_the_partial_batch():
    order = reference_check.batch_order(70, epochs=3, batch_size=32, seed=43)
    assert order.shape == (3, 2, 32)
    for epoch in order:
        assert len(np.unique(epoch)) == 64 and epoch.max() < 70
    assert not np.array_equal(order[0], order[1])
    np.testing.assert_array_equal(order, reference_check.batch_order(70, 3, 32, seed=43))


def test_matrix_names_map_to_the_torch_modules():
    name = "bert/encoder/layer/5/attention/output/dense/kernel"
    assert reference_check.torch_name(name) == "layer.5.attention.output.dense"


def test_steps_part_on_values_or_masks():
    same = {"loss": [0.5, 0.5], "grad_norm_pst": [1.0, 1.0], "grad_norm_head": [0.0, 0.0], "uv_ratio_median": [0, 0]}
    assert not reference_check.parted(same)
    assert not reference_check.parted({**same, "mask_agreement": 0.9999})
    assert reference_check.parted({**same, "mask_agreement": 0.99})
    assert reference_check.parted({**same, "loss": [0.5, 0.52]})
