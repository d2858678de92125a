"""The grand-challenge.org algorithm container: the I/O contract (``contract``), memory and input
limits (``resources``) and the ``python -m algorithm gc`` entry point (``grand_challenge``)."""
