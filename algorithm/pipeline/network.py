"""Step 2: the network on its grid. Stage I on the whole scan, stage II tiled over the stage-I lung
box (algorithm/inference.py), with the one out-of-memory policy of ``predict_network_grid``: the
tile batch halves, and at one tile a GPU run continues on the CPU."""

from __future__ import annotations

from collections.abc import Callable

from algorithm.errors import InputError
from algorithm.inference import NetworkPrediction
from algorithm.preprocessing import PreprocessedScan

# progress(stage, done, total): stage is "preprocess", "network", "tile" (done of total stage-II
# tiles), "postprocess", "fissures" or "measures"
Progress = Callable[..., None]
# predict(scan_zyx, spacing_mm_zyx, on_tile=None): LobeSegmenter.predict_grid
Predict = Callable[..., NetworkPrediction]


def run_network(scan: PreprocessedScan, predict: Predict, progress: Progress) -> NetworkPrediction:
    """Both stages on ``scan``; ``InputError`` when stage I finds no lung."""
    progress("network")

    def on_tile(done: int, total: int = 0) -> None:
        progress("tile", done, total)

    prediction = predict(scan.array, scan.spacing_mm_zyx, on_tile=on_tile)
    if prediction.lung_box is None:
        raise InputError("no lungs found in the image: is it a chest CT?")
    return prediction

