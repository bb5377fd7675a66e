#!/usr/bin/env python3
"""Runs Postern's integration tests: every tests/integration/test_*.py.

Each file is a plain unittest module. Tests find the cluster and its services
through the environment that tests/run exports:
    POSTERN_PG_DSN, POSTERN_PG_HOST, POSTERN_PG_PORT   private PostgreSQL
    POSTERN_REDIS_HOST, POSTERN_REDIS_PORT             private Redis
    POSTERN_SERVICES_DIR   the services' folder (for fault tests:
                           import services; services.stop_postgres(dir) ...)
    POSTERN_BIN_DIR        build folder holding the daemons to test
                           (build/ or build-asan/)
    POSTERN_SOURCE_DIR     the source tree
tests/harness is on sys.path, so a test can `import services`.

Output: one line per test (PASS/FAIL/ERROR/SKIP, name, time), failure
details, and a closing line exactly "integration: N passed, N failed".
Skips are allowed locally; under CI=true a skip counts as a failure so that
nothing passes silently there. Exit status 0 only when nothing failed.

usage: runner.py [--only PATTERN] [--list] [--start-services] [-v]
  --only PATTERN    run only tests whose id (file.Class.method) or file name
                    matches PATTERN: a shell glob, or a substring when it has
                    no glob characters (e.g. --only imap, --only 'test_pop3*')
  --list            print the matching test ids and exit
  --start-services  start private PostgreSQL and Redis for this run when
                    POSTERN_PG_DSN is not set (handy outside tests/run)
"""

import fnmatch
import importlib.util
import os
import shutil
import sys
import tempfile
import time
import traceback
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "tests", "harness"))
sys.path.insert(0, HERE)


def _matches(pattern, *names):
    if pattern is None:
        return True
    if not any(c in pattern for c in "*?["):
        pattern = "*%s*" % pattern
    return any(fnmatch.fnmatchcase(n, pattern) for n in names)


def _iter_tests(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from _iter_tests(t)
        else:
            yield t


def discover(pattern=None):
    """(tests, load_errors): matching unittest cases from test_*.py files."""
    loader = unittest.TestLoader()
    tests, errors = [], []
    for fname in sorted(os.listdir(HERE)):
        if not (fname.startswith("test_") and fname.endswith(".py")):
            continue
        modname = fname[:-3]
        try:
            spec = importlib.util.spec_from_file_location(modname, os.path.join(HERE, fname))
            mod = importlib.util.module_from_spec(spec)
            sys.modules[modname] = mod
            spec.loader.exec_module(mod)
        except Exception:
            if _matches(pattern, modname, fname):
                errors.append((modname, traceback.format_exc()))
            continue
        for t in _iter_tests(loader.loadTestsFromModule(mod)):
            tid = t.id()
            if _matches(pattern, tid, modname, fname):
                tests.append(t)
    return tests, errors


class _Result(unittest.TestResult):
    """Prints one line per test as it ends and keeps the counts. Run through
    a TestSuite, so class and module fixtures (setUpClass, setUpModule) work;
    a failing fixture is reported as its own ERROR line."""

    def __init__(self, ci):
        super().__init__()
        self.ci = ci
        self.passed = self.failed = self.skipped = 0
        self._outcome = None
        self._detail = ""
        self._t0 = 0.0

    def _report(self, name, outcome, detail, took):
        if outcome == "SKIP":
            self.skipped += 1
            if self.ci:
                self.failed += 1
                print("FAIL  %s (%.2fs) skipped under CI=true: %s" % (name, took, detail),
                      flush=True)
            else:
                print("SKIP  %s (%.2fs): %s" % (name, took, detail), flush=True)
            return
        if outcome == "PASS":
            self.passed += 1
        else:
            self.failed += 1
        print("%-5s %s (%.2fs)" % (outcome, name, took), flush=True)
        if detail and outcome != "PASS":
            print(detail.rstrip(), flush=True)

    def startTest(self, test):
        super().startTest(test)
        self._outcome, self._detail = None, ""
        self._t0 = time.monotonic()

    def stopTest(self, test):
        super().stopTest(test)
        self._report(test.id(), self._outcome or "ERROR", self._detail,
                     time.monotonic() - self._t0)

    def _fixture(self, test):
        # setUpClass/setUpModule/tearDown* problems come with a stand-in
        # object that is not a TestCase and no startTest/stopTest around it.
        return not isinstance(test, unittest.TestCase)

    def addSuccess(self, test):
        self._outcome = self._outcome or "PASS"

    def addFailure(self, test, err):
        self._outcome = "FAIL"
        self._detail += self._exc_info_to_string(err, test)

    def addError(self, test, err):
        if self._fixture(test):
            self._report(test.id(), "ERROR", self._exc_info_to_string(err, test), 0.0)
            return
        if self._outcome != "FAIL":
            self._outcome = "ERROR"
        self._detail += self._exc_info_to_string(err, test)

    def addSkip(self, test, reason):
        if self._fixture(test):
            self._report(test.id(), "SKIP", reason, 0.0)
            return
        self._outcome = "SKIP"
        self._detail = reason

    def addExpectedFailure(self, test, err):
        self._outcome = "PASS"

    def addUnexpectedSuccess(self, test):
        self._outcome = "FAIL"
        self._detail = "unexpected success"

    def addSubTest(self, test, subtest, err):
        if err is not None:
            if issubclass(err[0], test.failureException):
                self.addFailure(subtest, err)
            else:
                self.addError(subtest, err)


def _start_services():
    import services
    folder = tempfile.mkdtemp(prefix="postern-it-")
    os.environ.update(services.start(folder))
    return folder


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    pattern, list_only, start_services = None, False, False
    while argv:
        a = argv.pop(0)
        if a == "--only" and argv:
            pattern = argv.pop(0)
        elif a.startswith("--only="):
            pattern = a.split("=", 1)[1]
        elif a == "--list":
            list_only = True
        elif a == "--start-services":
            start_services = True
        elif a in ("-v", "--verbose"):
            pass
        elif a in ("-h", "--help"):
            print(__doc__)
            return 0
        else:
            print("runner: unknown argument %s (see --help)" % a, file=sys.stderr)
            return 2

    ci = os.environ.get("CI") == "true"
    os.environ.setdefault("POSTERN_SOURCE_DIR", TOP)
    os.environ.setdefault("POSTERN_BIN_DIR", os.path.join(TOP, "build"))

    if list_only:
        tests, _ = discover(pattern)
        for t in tests:
            print(t.id())
        return 0

    # Services first: support modules read POSTERN_PG_DSN and friends when
    # they are imported, which discover() does.
    services_dir = None
    if start_services and not os.environ.get("POSTERN_PG_DSN"):
        services_dir = _start_services()
    try:
        return _run(pattern, ci)
    finally:
        if services_dir:
            import services
            services.stop(services_dir, remove=True)
            shutil.rmtree(services_dir, ignore_errors=True)


def _run(pattern, ci):
    tests, load_errors = discover(pattern)

    result = _Result(ci)
    for modname, tb in load_errors:
        print("ERROR %s (import)\n%s" % (modname, tb), flush=True)
        result.failed += 1
    if not tests and not load_errors:
        print("integration: no test matches %r" % pattern if pattern
              else "integration: no tests found in %s" % HERE, flush=True)
        if pattern:
            result.failed += 1

    unittest.TestSuite(tests).run(result)
    if result.skipped and not ci:
        print("integration: %d skipped (counted as failures under CI=true)" % result.skipped)
    print("integration: %d passed, %d failed" % (result.passed, result.failed), flush=True)
    return 0 if result.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
