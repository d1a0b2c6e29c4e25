"""Nothing to set up: the eyechart pytest plugin provides the ``api`` and ``profile`` fixtures, the
options (``--eyechart-*``), check ids and reports, so a suite of your own needs no conftest either."""
