"""Entry point of one measurement child: ``python -m bench._child MODULE FUNC PARAMS_JSON``.

Calls ``MODULE.FUNC(**params)`` and writes its result on stdout as one line
``<RESULT_MARK><json>``, so stray output of the code under test cannot be mistaken for it.
A measurement function returns either a number (in the figure's unit) or a dict
``{"value": number, "info": {...}}`` where ``info`` holds side observations (kept in the
JSON output, not used for the verdict).

It may instead be a generator that yields that result once and then tears down (shuts a
runtime down, releases parked tasks): the result is written and flushed before the
teardown runs, so a teardown that hangs or crashes still leaves the figure readable. The
parent treats a nonzero exit status (or a timeout) as a crash all the same.
"""

from __future__ import annotations

import importlib
import json
import sys
import types

RESULT_MARK = "@@bench-result@@ "


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m bench._child MODULE FUNC PARAMS_JSON", file=sys.stderr)
        return 2
    module, func, params = argv
    fn = getattr(importlib.import_module(module), func)
    result = fn(**json.loads(params))
    gen = None
    if isinstance(result, types.GeneratorType):
        gen, result = result, next(result)
    if not isinstance(result, dict):
        result = {"value": result}
    result["value"] = float(result["value"])
    sys.stdout.write(RESULT_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()
    if gen is not None:
        for _ in gen:  # teardown
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
