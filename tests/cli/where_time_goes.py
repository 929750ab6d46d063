"""Checks of the benches' "where the time goes" lines (cli_test.sh): the
printed parts, "NAME X ms P%" joined by " | " (an unmeasured one "NAME n/a
(in other)"), add up to the step the line names, within the rounding of
three decimals per part; the JSON's KEY_ms parts add up to its step_ms."""

import re


def lines_of(text, prefix):
    return [l for l in text.splitlines() if l.strip().startswith(prefix)]


def parts_sum_to_step(line, step_marker):
    head, _, body = line.partition("): ")
    step = float(re.search(re.escape(step_marker) + r"([0-9.]+) ms", head).group(1))
    parts = body.split(" | ")
    assert parts[-1].startswith("other "), line
    total = 0.0
    for p in parts:
        m = re.fullmatch(r"([a-z-]+) (-?[0-9.]+) ms -?[0-9.]+%|([a-z-]+) n/a \(in other\)", p)
        assert m, (p, line)
        if m.group(2) is not None:
            total += float(m.group(2))
    assert abs(total - step) <= 0.0005 * (len(parts) + 1) + 1e-9, (total, step, line)


def json_sums_to_step(doc):
    total = sum(v for k, v in doc.items() if k.endswith("_ms") and k != "step_ms" and v is not None)
    assert abs(total - doc["step_ms"]) <= 1e-6 * max(1.0, doc["step_ms"]), doc
