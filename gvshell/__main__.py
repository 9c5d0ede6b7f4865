"""`python -m gvshell` and the gvshell console script.

Importing gvshell.app and what it needs takes a few hundred milliseconds; Ctrl-C in that
window ends gvshell as it does later in its start (a line and exit status 130), not with a
traceback of whichever import it interrupted.
"""
import sys


def main() -> int:
    try:
        from gvshell.app import main as app_main
    except KeyboardInterrupt:
        print("gvshell: interrupted", file=sys.stderr)
        return 130
    return app_main()


if __name__ == "__main__":
    raise SystemExit(main())
