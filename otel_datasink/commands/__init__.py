"""One module per ``otel-datasink`` subcommand: ``add_arguments(parser)`` and ``run(args) -> int`` (its one-line help
and shared options are in :data:`otel_datasink.cli.COMMANDS`); ``_output`` prints what they show."""
