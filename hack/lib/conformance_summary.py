#!/usr/bin/env python3
"""Summarises ginkgo JUnit reports of upstream's e2e suite: passed / failed / skipped by SIG,
then each failed spec with the first line of its failure.

Usage: conformance_summary.py REPORT.xml [REPORT.xml ...]
The last line is the plain `conformance: N passed, N failed, N skipped` line; exits 1 when a
spec failed, 2 when no report could be read.
"""

import re
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict

SIG = re.compile(r"\[(sig-[a-z-]+)\]")
# ginkgo's own nodes around the specs (suite set-up, reports), not specs.
NOT_A_SPEC = re.compile(r"^\[(SynchronizedBeforeSuite|SynchronizedAfterSuite|BeforeSuite|AfterSuite|ReportBeforeSuite|ReportAfterSuite|DeferCleanup[^\]]*)\]")


def outcome(case):
    """'failed', 'skipped', 'passed' or None (not selected: left out by the run's filters,
    which ginkgo reports as skipped with the bare message "skipped") for one <testcase>."""
    if case.find("failure") is not None or case.find("error") is not None:
        return "failed"
    skipped = case.find("skipped")
    if skipped is not None and skipped.get("message", "") == "skipped":
        return None
    if skipped is not None or case.get("status") in ("skipped", "pending"):
        return "skipped"
    return "passed"


def first_line(case):
    """The first non-empty line of the failure's message (or text)."""
    node = case.find("failure")
    if node is None:
        node = case.find("error")
    text = (node.get("message") or node.text or "").strip()
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line[:300]
    return "(no message)"


def main(paths):
    by_sig = defaultdict(lambda: {"passed": 0, "failed": 0, "skipped": 0})
    failures = []
    read = 0
    for path in paths:
        try:
            root = ET.parse(path).getroot()
        except (OSError, ET.ParseError) as e:
            print(f"conformance: cannot read {path}: {e}", file=sys.stderr)
            continue
        read += 1
        for case in root.iter("testcase"):
            name = re.sub(r"^\[It\]\s*", "", case.get("name", "")).strip()
            if NOT_A_SPEC.match(name):
                if outcome(case) == "failed":
                    failures.append(("suite", name, first_line(case)))
                continue
            m = SIG.search(name)
            sig = m.group(1) if m else "other"
            result = outcome(case)
            if result is None:
                continue
            by_sig[sig][result] += 1
            if result == "failed":
                failures.append((sig, name, first_line(case)))
    if not read:
        print("conformance: no report could be read", file=sys.stderr)
        return 2
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    print(f"{'SIG':<24} {'passed':>7} {'failed':>7} {'skipped':>8}")
    for sig in sorted(by_sig):
        c = by_sig[sig]
        print(f"{sig:<24} {c['passed']:>7} {c['failed']:>7} {c['skipped']:>8}")
        for k in totals:
            totals[k] += c[k]
    ran = totals["passed"] + totals["failed"]
    if ran:
        print(f"pass rate: {100.0 * totals['passed'] / ran:.1f}% of {ran} specs that ran")
    if failures:
        print("\nfailed:")
        for _, name, line in failures:
            print(f"- {name}\n    {line}")
    print(f"\nconformance: {totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped")
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1:]))
