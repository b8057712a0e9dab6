"""`phiray report RUN_DIR`: the run's HTML + Markdown report, layered bottom-up.

- ``render``: the building blocks (``Section``, plots, HTML/Markdown writers);
- ``sections``, ``thesis``, ``tracking``: one function per report section, built from ``render``;
- ``build``: collects the sections and writes the report (the ``phiray report`` command).
"""
