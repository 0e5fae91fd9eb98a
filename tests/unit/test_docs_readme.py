"""The README cannot drift from the code: its `dnn.list_models()` line names exactly the registered models, its
recipe tables name exactly the recipes `dnn list` shows, and `dnn list` gives each recipe's first sentence whole."""

import re
from pathlib import Path

import pytest

import dnn
from dnn.cli import main, recipe_summary
from dnn.run import RECIPES, list_recipes

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def _paragraph(start: str) -> str:
    at = README.index(start)
    return README[at : README.index("\n\n", at)]


def test_the_model_line_names_every_registered_model_once():
    names = re.findall(r"`([a-z0-9_]+)`", _paragraph("`dnn.list_models()`").split(". ")[0])
    assert sorted(names) == dnn.list_models() and len(names) == len(set(names))


def test_the_recipe_tables_name_every_recipe_dnn_list_shows(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    shown = re.findall(r"^  (\S+) ", out[out.index("recipes:") : out.index("tasks (data.task)")], flags=re.M)
    assert shown == list_recipes()
    table = _paragraph("| recipe | what it shows |")
    datasets = _paragraph("| `dnn data get` | what it lays out | recipe |")
    in_table = [re.match(r"\| `([^`]+)` \|", row).group(1) for row in table.splitlines()[2:]]
    in_datasets = [row.split(" | ")[2].strip("`") for row in datasets.splitlines()[2:]]
    assert sorted(in_table + in_datasets) == shown


@pytest.mark.parametrize(
    "header,first",
    [
        ("# One. Two.\n", "One."),
        ("# A recipe (Maas et al. 2011: 25,000 reviews) on\n# two lines. Shows: more.\nseed: 0\n",
         "A recipe (Maas et al. 2011: 25,000 reviews) on two lines."),
        ("# Which way does it move (left, right)?\n# Shows: ...\n", "Which way does it move (left, right)?"),
        ("# No full stop at all\nseed: 0\n# not the header\n", "No full stop at all"),
    ],
)  # fmt: skip
def test_a_recipe_summary_is_its_first_sentence_whole(header, first):
    assert recipe_summary(header) == first


def test_dnn_list_never_cuts_a_recipe_header_mid_sentence(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in list_recipes():
        (line,) = [line for line in out.splitlines() if line.startswith(f"  {name} ")]
        summary = line[len(f"  {name} ") :].strip()
        assert summary[-1] in ".?!", (name, summary)
        header = " ".join(
            line.lstrip("# ") for line in (RECIPES / f"{name}.yaml").read_text(encoding="utf-8").splitlines()
            if line.startswith("#")
        )  # fmt: skip
        assert " ".join(header.split()).startswith(summary)
    assert "upsampled to LeNet's own 32×32 input" in out  # the header's first sentence runs on to its next line
