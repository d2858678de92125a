"""``python -m training COMMAND ...``: dispatch to one module per command."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "phantoms": ("training.phantoms.cli", "generate synthetic chest CT phantoms with lobe labels"),
    "import-dataset": ("training.data.import_dataset", "import a labelled lobe data set (TotalSegmentator, nnU-Net, folder)"),
    "train": ("training.loop.train", "train or fine-tune CTSU-Net from a config"),
    "evaluate": ("training.evaluation.evaluate", "IoU / HD95 of predicted lobe masks against references"),
    "predict": ("training.loop.predict", "lobe masks from a training checkpoint (any model kind), for comparisons"),
    "export": ("training.loop.export", "write a training checkpoint in the shipped format"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in COMMANDS:
        print("usage: python -m training {" + ",".join(COMMANDS) + "} ...", file=sys.stderr)
        for name, (_, help_text) in COMMANDS.items():
            print(f"  {name:14s} {help_text}", file=sys.stderr)
        return 0 if argv and argv[0] in {"-h", "--help"} else 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
