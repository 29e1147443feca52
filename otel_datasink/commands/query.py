"""Not built yet."""

HELP = "(not built yet)"


def add_arguments(parser):
    pass


def run(args):
    raise SystemExit("otel-datasink query: not built yet")
