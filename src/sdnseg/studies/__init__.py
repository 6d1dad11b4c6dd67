"""Recipes built on the library: ``sdnseg study``, a matrix of fit/test runs and its report.

- :mod:`sdnseg.studies.spec`: the study file (:class:`~sdnseg.studies.spec.Study`), the order
  its runs are made in and where each run lives; what the runner and the report both need.
- :mod:`sdnseg.studies.runner`: runs, resumes and skips the matrix's ``sdnseg`` commands.
- :mod:`sdnseg.studies.report`: finished results in, tables and figures out; it never imports
  the runner, so it can be used on results alone.

Nothing else in sdnseg imports this package; the CLI reaches the runner through the name
``sdnseg.studies.runner:main`` in ``sdnseg.engine.cli.COMMANDS``. Modules are not imported
here, so that importing the report does not import the runner.
"""
