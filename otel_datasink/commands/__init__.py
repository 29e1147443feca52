"""One module per ``otel-datasink`` subcommand: ``add_arguments(parser)`` and ``run(args) -> int`` (its one-line help
and shared options are in :data:`otel_datasink.cli.COMMANDS`).

What commands share is in the ``_`` modules: ``_errors`` (exit statuses, :class:`~._errors.CommandError`, one-line
wording of any error), ``_args`` (the options several take) and ``_output`` (what they print). A command imports
those and the library, never :mod:`otel_datasink.cli` nor another command; the library imports nothing from here
(tests/test_architecture.py).
"""
