"""The pipeline's steps, one module each, in the order ``LobeSegmenter.__call__`` runs them.

Each step is a function of what the steps before it handed on (small frozen dataclasses, or the
arrays themselves) and returns what it made; none keeps state or changes its inputs:

    preprocess.check_input(image)                         -> input warnings
    preprocess.preprocess(image, inplane_size)            -> PreprocessedScan (with its canonical image)
    network.run_network(scan, predict, progress)          -> NetworkPrediction
    clean_up.clean_up(prediction, scan)                   -> CleanLobes (network grid)
    lung.lung_from_scan(scan, prediction, cleaned)        -> ScanLobes (the scan's grid, reoriented)
    fissures.refine_lobes(canonical, labels, mode)        -> FittedLobes
    input_grid.to_input_grid(labels, scan, image)         -> InputGridMask (the caller's geometry)
    measures.measure(image, mask, ...)                    -> LobeReport

The methods the steps run live beside this package, one module or package each
(``preprocessing``, ``inference``, ``postprocessing``, ``lung_extent``, ``fissure_fit``,
``report/``); the image operations they share in ``image_ops`` and ``boxes``. Benchmarks call these
steps (or the segmenter), never copies of them: tests/test_benchmark_steps.py.
"""
