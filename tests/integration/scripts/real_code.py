"""Real code in a GVThread with the default stack, each case in a fresh interpreter so
that its imports happen inside the GVThread: prints one result line per case, and the
same case run on an ordinary thread where a comparison is asked for.

    python real_code.py CASE
"""
import sys
import threading

import gvthread


def imports():
    import numpy
    import pandas
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    a = numpy.arange(12).reshape(3, 4)
    df = pandas.DataFrame(a, columns=list("abcd"))
    fig, ax = plt.subplots()
    ax.plot(df["a"], df["b"])
    fig.canvas.draw()
    import json, decimal, email.mime.text  # noqa: E401 (the issue's own list)
    return f"{int(a.sum())} {df['d'].sum()} {len(fig.axes)} {decimal.Decimal('1.10') * 3}"


def nested(n):
    x = []
    for _ in range(n):
        x = [x]
    return x


def deep_data():
    """deepcopy, json, pickle, marshal and repr of nested data, re and sorted(key=...),
    under the default recursion limit and under a raised one."""
    import copy, json, marshal, pickle, re  # noqa: E401
    out = []
    for limit, depth in ((None, 490), (2000, 500)):
        old = sys.getrecursionlimit()
        if limit:
            sys.setrecursionlimit(limit)
        try:
            x = nested(depth)
            for name, fn in (("deepcopy", copy.deepcopy),
                             ("json", lambda v: json.loads(json.dumps(v))),
                             ("pickle", lambda v: pickle.loads(pickle.dumps(v))),
                             ("marshal", lambda v: marshal.loads(marshal.dumps(v))),
                             ("repr", repr)):
                try:
                    fn(x)
                    out.append(f"{name}{depth}:ok")
                except RecursionError:
                    out.append(f"{name}{depth}:RecursionError")
        finally:
            sys.setrecursionlimit(old)
    out.append("re:" + str(len(re.findall(r"(a|b)*c", "ab" * 2000 + "c"))))
    out.append("sorted:" + str(sorted(range(10000), key=lambda v: -v)[0]))
    return " ".join(out)


def recursion():
    def rec(n):
        return 0 if n == 0 else 1 + rec(n - 1)
    return str(rec(950))


def stdlib_suite():
    """CPython's own test_copy and test_json, run by unittest."""
    import unittest
    from test import test_copy, test_json  # noqa: F401
    loader = unittest.defaultTestLoader
    suite = unittest.TestSuite([loader.loadTestsFromName("test.test_copy"),
                                loader.loadTestsFromName("test.test_json")])
    import io
    res = unittest.TextTestRunner(stream=io.StringIO(), verbosity=0).run(suite)
    return f"run={res.testsRun} failures={len(res.failures)} errors={len(res.errors)} " \
           f"skipped={len(res.skipped)}"


CASES = {"imports": imports, "deep_data": deep_data, "recursion": recursion,
         "stdlib_suite": stdlib_suite}


def on_thread(fn):
    box = []
    t = threading.Thread(target=lambda: box.append(fn()))
    t.start()
    t.join()
    return box[0]


def main():
    case, where = sys.argv[1], sys.argv[2]
    fn = CASES[case]
    if where == "thread":
        print("RESULT", on_thread(fn), flush=True)
        return
    with gvthread.Runtime(workers=2) as rt:
        print("RESULT", rt.spawn(fn).join(timeout=240), flush=True)


if __name__ == "__main__":
    main()
