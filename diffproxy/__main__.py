"""`python -m diffproxy [flags]` runs the proxy; `python -m diffproxy report ...` prints a
report from a running proxy's API."""

from __future__ import annotations

import sys

from . import __version__


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "report":
        from .report import main as report_main  # only the report needs its dependencies

        return report_main(argv[1:])
    if argv and argv[0] in ("-version", "--version", "version"):
        print(f"diffproxy {__version__}")
        return 0

    from .settings import HelpRequested, SettingsError, fail, load, usage

    try:
        settings = load(argv)
    except HelpRequested:
        print(usage())
        return 0
    except SettingsError as exc:
        return fail(str(exc))

    from .service import run

    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
