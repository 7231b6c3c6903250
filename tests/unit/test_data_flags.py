"""Data flags refused at start with a ConfigError naming the flag (--split here).

Accepted forms are Megatron-LM's: it reads every run of digits and dots in the string, so
"90,5,5", "90 5 5" and "90/5/5" all mean 90/5/5 there and here; what Megatron would misread
("90,abc" as 90,0,0, "-5" as 5) or reject with an assert (4 parts, all zeros) is refused by name.
"""

import os
import subprocess
import sys

import pytest

from megatron.core.datasets.blended_megatron_dataset_config import parse_and_normalize_split
from megatron.training.arguments import ConfigError, parse_and_validate

from tests.unit.test_arguments import BASE  # a small valid run on mock data

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True)
def _single_process(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("split, expected", [
    ("90,5,5", [0.9, 0.05, 0.05]), ("90 5 5", [0.9, 0.05, 0.05]), ("90/5/5", [0.9, 0.05, 0.05]),
    ("969, 30, 1", [0.969, 0.03, 0.001]), ("100", [1.0, 0.0, 0.0]), ("1.5,.5", [0.75, 0.25, 0.0]),
])
def test_megatron_forms_are_accepted(split, expected):
    assert parse_and_normalize_split(split) == pytest.approx(expected, abs=0)
    assert parse_and_validate(argv=BASE + ["--split", split], world_size=1).split == split


@pytest.mark.parametrize("split, message", [
    ("90,abc", "--split '90,abc': the part 'abc' is not a number"),
    ("90,-5,15", "--split '90,-5,15': the part -5 is negative"),
    ("0,0,0", "--split '0,0,0': the proportions are all zero"),
    ("98,1,1,0", "--split '98,1,1,0' has 4 parts; give at most 3"),
    ("90,,10", "--split '90,,10': an empty part is not a number"),
    ("", "--split '' is empty"),
    ("1e2,1,1", "the part '1e2' is not a number"),
])
def test_bad_splits_are_refused_by_name(split, message):
    with pytest.raises(ConfigError) as error:
        parse_and_validate(argv=BASE + ["--split", split], world_size=1)
    assert message in str(error.value)


def test_a_bad_split_stops_the_command_with_one_line(tmp_path):
    done = subprocess.run([sys.executable, os.path.join(REPO, "pretrain_gpt.py"), *BASE,
                           "--split", "90,abc"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == ["pretrain_gpt.py: error: --split '90,abc': the part 'abc' is not a number; give up "
                     "to 3 non-negative numbers separated by commas, e.g. '969,30,1' or '90,10,0'"], done.stderr
