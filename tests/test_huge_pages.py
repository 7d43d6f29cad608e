"""The training launchers restart once with glibc's huge-page tunable, and only where it can help."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.huge_pages import TUNABLE, glibc_version, huge_page_env, thp_mode

MADVISE = "always [madvise] never\n"


def test_the_tunable_is_added_to_the_users_own_and_never_overrides_a_choice():
    assert huge_page_env({"PATH": "/bin"}, (2, 36), "madvise") == {"PATH": "/bin", "GLIBC_TUNABLES": f"{TUNABLE}=1"}
    added = huge_page_env({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, (2, 35), "madvise")
    assert added["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{TUNABLE}=1"
    assert huge_page_env({"GLIBC_TUNABLES": f"{TUNABLE}=0"}, (2, 36), "madvise") is None  # the user's opt-out
    assert huge_page_env({"GLIBC_TUNABLES": f"{TUNABLE}=1"}, (2, 36), "madvise") is None  # already restarted


@pytest.mark.parametrize(
    ("glibc", "mode"),
    [((2, 34), "madvise"), ((), "madvise"), ((2, 36), "always"), ((2, 36), "never"), ((2, 36), None)],
)
def test_no_restart_without_the_tunable_or_with_thp_not_on_request(glibc, mode):
    assert huge_page_env({}, glibc, mode) is None


def test_thp_mode_reads_the_bracketed_mode(tmp_path: Path):
    (tmp_path / "enabled").write_text(MADVISE)
    assert thp_mode(tmp_path / "enabled") == "madvise"
    assert thp_mode(tmp_path / "missing") is None


@pytest.mark.skipif(
    huge_page_env({}, glibc_version(), thp_mode()) is None, reason="this host's glibc or THP mode needs no restart"
)
def test_a_launcher_restarts_itself_once_with_the_same_arguments_and_process():
    code = (
        "import os, sys\n"
        "print('start', os.getpid(), flush=True)\n"
        "from experiments.huge_pages import restart_with_huge_pages\n"
        "restart_with_huge_pages()\n"
        "print('ran', os.getpid(), sys.argv[1:], os.environ['GLIBC_TUNABLES'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    out = subprocess.run(
        [sys.executable, "-c", code, "--task", "sst2"], env=env, capture_output=True, text=True, timeout=60, check=True
    ).stdout.split("\n")
    starts = [line.split()[1] for line in out if line.startswith("start")]
    assert len(starts) == 2 and starts[0] == starts[1]  # restarted once, in place
    assert out[2] == f"ran {starts[0]} ['--task', 'sst2'] {TUNABLE}=1"
