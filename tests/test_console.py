"""What a person sees on the console: help texts, the summary with quality flags, the progress bar,
no folder left behind by a refused input, and the installed command."""

from __future__ import annotations

import importlib
import sys
import tomllib

import pytest

from algorithm.cli import _StageProgress, build_parser, main, program_name
from conftest import REPO_ROOT


def _help(capsys, parser_args: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(parser_args)
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_gc_help_documents_the_folders_and_the_environment(capsys):
    text = _help(capsys, ["gc", "--help"])
    for needle in ("/input", "/output", "/opt/ml/model", "inputs.json", "GC_INPUT_DIR", "GC_OUTPUT_DIR",
                   "GC_MODEL_DIR", "GC_DEVICE", "GC_PRECISION", "GRAND_CHALLENGE_COMPONENT_MAX_MEMORY_MB"):
        assert needle in text, needle


def test_every_option_with_a_default_shows_it(capsys):
    text = " ".join(_help(capsys, ["predict", "--help"]).split())  # argparse wraps lines
    for option, default in (("--device", "auto"), ("--batch-size", "1"), ("--precision", "auto"),
                            ("--max-tile-voxels", str(144**3)), ("--weights", "the shipped weights"),
                            ("--tile-out", "planned per scan")):
        after = text.split(f" {option} ", 1)[1]
        assert f"(default: {default})" in after.split(" --", 1)[0], option


@pytest.mark.parametrize("command", ["train", "export", "predict", "evaluate"])
def test_training_help_is_plain_text(command, capsys):
    from training.__main__ import COMMANDS

    module = importlib.import_module(COMMANDS[command][0])
    with pytest.raises(SystemExit):
        module.main(["--help"])
    text = capsys.readouterr().out
    assert f"python -m training {command}" in text and "``" not in text


def test_a_refused_input_or_setting_leaves_no_output_folder(tmp_path, capsys, test_weights, chest_ct_path):
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "missing.mha"), "-o", str(out), "--quiet"]) == 1
    assert not out.exists()
    assert main(["predict", str(chest_ct_path), "-o", str(out), "--device", "cpu", "--weights",
                 str(tmp_path / "no-weights.pt"), "--quiet"]) == 1
    assert not out.exists()
    broken = tmp_path / "broken.mha"
    broken.write_text("not an image")
    assert main(["predict", str(broken), "-o", str(out), "--device", "cpu", "--weights", str(test_weights), "--quiet"]) == 1
    assert not out.exists()
    assert "error:" in capsys.readouterr().err
    existing = tmp_path / "existing"
    existing.mkdir()
    assert main(["predict", str(broken), "-o", str(existing), "--device", "cpu", "--weights", str(test_weights), "--quiet"]) == 1
    assert existing.is_dir()  # a folder the user made is left alone


def test_quality_flags_follow_the_volumes(tmp_path, capsys, test_weights, chest_ct_path, fast_network):
    assert main(["predict", str(chest_ct_path), "-o", str(tmp_path / "out"), "--device", "cpu",
                 "--weights", str(test_weights), "--quiet", "--no-preview"]) == 0
    lines = capsys.readouterr().out.splitlines()
    total = next(i for i, line in enumerate(lines) if line.split()[:1] == ["total"])
    flags = [i for i, line in enumerate(lines) if line.strip().startswith("quality ")]
    assert flags and min(flags) > total  # the synthetic chest has 6 mm slices: at least that warning
    assert any("slices 6.00 mm apart" in lines[i] for i in flags)


def test_the_progress_bar_counts_tiles_against_their_total(capsys):
    with _StageProgress("case", disable=False) as progress:
        progress("network")
        progress("tile", 2, 5)
        progress("tile", 1, 5)
        assert (progress.bar.n, progress.bar.total) == (3, 5)
    assert "/5 [" in capsys.readouterr().err  # the bar shows the total (and so a time estimate)


def test_the_installed_command_is_the_command_line(monkeypatch):
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    target = project["project"]["scripts"]["ctsunet-lobes"]
    module, function = target.split(":")
    assert getattr(importlib.import_module(module), function) is main
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/ctsunet-lobes"])
    assert program_name() == "ctsunet-lobes"
    monkeypatch.setattr(sys, "argv", ["/x/algorithm/__main__.py"])
    assert program_name() == "python -m algorithm"
    dynamic = project["tool"]["setuptools"]["dynamic"]
    assert dynamic["dependencies"]["file"] == ["requirements.txt"]  # one list: the container's
    assert "torch==2.13.0" in (REPO_ROOT / "requirements.txt").read_text().split()
