"""The runtime's version (the package, its JSON outputs, its checkpoints and DICOM-SEG files), in a
module of its own so that no module imports the ``algorithm`` package's ``__init__``, which imports
the segmenter on first use."""

__version__ = "0.1.0"
