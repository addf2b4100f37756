"""The command line and runner every integration suite shares."""

from __future__ import annotations

import os
import sys
import time
from typing import Callable, Optional

from .net import enter_private_netns


def run_suite(suite, verbosity: int = 2) -> int:
    """Run a unittest suite on stdout, print ``N passed, N failed`` (plus
    ``, N skipped``) as the last line; return the exit code (0 = all passed)."""
    import unittest

    class CountingResult(unittest.TextTestResult):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.passed = 0

        def addSuccess(self, test):
            super().addSuccess(test)
            self.passed += 1

    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=verbosity,
                                     resultclass=CountingResult)
    result = runner.run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    line = f"{result.passed} passed, {failed} failed"
    if result.skipped:
        line += f", {len(result.skipped)} skipped"
    sys.stdout.flush()
    print(line, flush=True)
    return 0 if failed == 0 and result.passed > 0 else 1


def suite_main(module, netns_prefix: str,
               add_args: Optional[Callable[[object], None]] = None,
               before_tests: Optional[Callable[[object], None]] = None) -> int:
    """The command line every integration suite shares: ``--pullgate BINARY``,
    ``-k PATTERN``, ``--keep``, ``-q`` and the suite's own options
    (``add_args(parser)``). Sets ``module.PULLGATE_BINARY``, enters a private
    network namespace, calls ``before_tests(args)`` there, runs the module's
    tests and returns the exit status (``N passed, N failed`` is printed last)."""
    import argparse
    import unittest

    ap = argparse.ArgumentParser(description=(module.__doc__ or "").split("\n")[0])
    ap.add_argument("--pullgate", required=True, help="path to the pullgate binary")
    ap.add_argument("-k", action="append", default=None, metavar="PATTERN",
                    help="only run tests matching PATTERN (unittest -k)")
    ap.add_argument("--keep", action="store_true", help="keep temp dirs (PULLGATE_IT_KEEP=1)")
    ap.add_argument("-q", "--quiet", action="store_true")
    if add_args:
        add_args(ap)
    args = ap.parse_args()
    module.PULLGATE_BINARY = os.path.abspath(args.pullgate)
    if args.keep:
        os.environ["PULLGATE_IT_KEEP"] = "1"
    print(f"network namespace: {enter_private_netns(netns_prefix)}")
    if before_tests:
        before_tests(args)
    loader = unittest.TestLoader()
    if args.k:
        loader.testNamePatterns = [p if "*" in p else f"*{p}*" for p in args.k]
    suite = loader.loadTestsFromModule(module)
    t0 = time.monotonic()
    rc = run_suite(suite, verbosity=1 if args.quiet else 2)
    print(f"total {time.monotonic() - t0:.1f}s", file=sys.stderr)
    return rc
