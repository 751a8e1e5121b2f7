#!/usr/bin/env python3
"""hack/bench.sh's table: figure lines in, one table and one JSON line per figure out.

Input: files of harness output; every line that starts with `{"figure"` is a JSON object
{"figure": str, "ours": number?, "upstream": number?, "unit": str}. A harness that measures
one binary per run (the kubelet's) prints the two sides on separate lines; lines with the
same figure are merged (a later value fills a missing side, or replaces it).

  bench_table.py FILE...      print the table, then the merged JSON lines
  bench_table.py --self-test  check the merging and formatting below
"""
import json
import sys


def parse_figures(lines):
    """Merged figures from `lines`, in the order each figure first appears."""
    merged = {}
    for line in lines:
        if not line.startswith('{"figure"'):
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            print(f"bench_table: not JSON, ignored: {line.strip()}", file=sys.stderr)
            continue
        fig = merged.setdefault(obj["figure"], {"figure": obj["figure"]})
        for key in ("ours", "upstream", "unit"):
            if obj.get(key) is not None:
                fig[key] = obj[key]
    return list(merged.values())


def fmt_value(v):
    """A number with at most two decimals and no trailing zeros ('-' when absent)."""
    if v is None:
        return "-"
    if isinstance(v, float) and v != v:  # NaN: the harness could not read it
        return "n/a"
    s = f"{v:.2f}".rstrip("0").rstrip(".")
    return s if s != "-0" else "0"


def ratio(fig):
    """ours / upstream to two decimals, or '-' when a side is missing or upstream is 0."""
    ours, up = fig.get("ours"), fig.get("upstream")
    if ours is None or up is None or up == 0 or ours != ours or up != up:
        return "-"
    return f"{ours / up:.2f}"


def table(figures):
    """A Markdown table: figure, ours, upstream, ratio (ours / upstream)."""
    rows = ["| figure | ours | upstream | ratio |", "|---|---|---|---|"]
    for f in figures:
        unit = f" {f['unit']}" if f.get("unit") else ""
        cells = [
            f["figure"],
            fmt_value(f.get("ours")) + (unit if f.get("ours") is not None else ""),
            fmt_value(f.get("upstream")) + (unit if f.get("upstream") is not None else ""),
            ratio(f),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def self_test():
    lines = [
        "noise\n",
        '{"figure": "kube-proxy 10000 Services full sync", "ours": 93.2, "upstream": 196.9, "unit": "s"}\n',
        '{"figure": "kubelet RSS idle", "ours": 20.5, "unit": "MiB"}\n',
        '{"figure": "kubelet RSS idle", "upstream": 82, "unit": "MiB"}\n',
        '{"figure": "dns qps", "ours": 100000, "unit": "queries/s"}\n',
        '{"figure": broken\n',
    ]
    figs = parse_figures(lines)
    assert [f["figure"] for f in figs] == [
        "kube-proxy 10000 Services full sync",
        "kubelet RSS idle",
        "dns qps",
    ], figs
    assert figs[1] == {"figure": "kubelet RSS idle", "ours": 20.5, "upstream": 82, "unit": "MiB"}
    assert ratio(figs[0]) == "0.47", ratio(figs[0])
    assert ratio(figs[2]) == "-"
    assert ratio({"ours": 1.0, "upstream": 0}) == "-"
    assert fmt_value(1.50) == "1.5" and fmt_value(100000) == "100000" and fmt_value(None) == "-"
    assert fmt_value(float("nan")) == "n/a"
    t = table(figs).splitlines()
    assert t[2] == "| kube-proxy 10000 Services full sync | 93.2 s | 196.9 s | 0.47 |", t[2]
    assert t[4] == "| dns qps | 100000 queries/s | - | - |", t[4]
    print("bench_table self-test: ok")


def main(argv):
    if argv[1:] == ["--self-test"]:
        self_test()
        return 0
    lines = []
    for path in argv[1:]:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines.extend(f.readlines())
    figures = parse_figures(lines)
    if not figures:
        print("(no figures)")
        return 0
    print(table(figures))
    print()
    for f in figures:
        print(json.dumps(f))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
