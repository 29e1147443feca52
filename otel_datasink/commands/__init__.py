"""One module per ``otel-datasink`` subcommand: ``HELP``, ``add_arguments(parser)``, ``run(args) -> int``."""
