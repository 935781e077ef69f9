"""What the loader found wrong with its input, for the summary and ``lo2_load_info.json``.

Nothing here stops a load: each kind of problem is a list of the files, folders or cases
concerned, with a count, under the ``"input_problems"`` key of the info file (every key is
always there, so a reader can rely on them), and a line per non-empty kind in the summary.
"""

from __future__ import annotations

import re

from loglead_lo2.limits import MAX_MESSAGE_CHARS
from loglead_lo2.loader.discover import Selection
from loglead_lo2.loader.parse import ParseStats

LIMIT = 50
"""Items listed per kind in the info file (the count is always complete)."""

DESCRIPTIONS = {
    "skipped": "entries found but not loaded, with the reason (stray, not a regular file, "
               "symlink out of the tree, bad name, malformed metrics file, ...)",
    "missing_service_logs": "run/test_case/service of selected case folders without that "
                            "service's log",
    "runs_without_correct": "selected runs without a 'correct' folder (no normal sequences)",
    "empty_files": "log files read that hold no line, or only blank lines",
    "continuation_only_files": "log files whose kept lines are all orphan continuation lines "
                               "(no event)",
    "unreadable_files": "log files that could not be read (permission, vanished, not a "
                        "regular file)",
    "invalid_utf8_files": "log files read with replacement characters",
    "lone_cr_files": "log files with lone \\r line breaks (split at each)",
    "bad_time_lines": "lines shaped like logback lines with an impossible time of day "
                      "(kept as events outside the layout)",
    "long_messages": f"events longer than {MAX_MESSAGE_CHARS} characters (the enhancers "
                     "use their first that many)",
}


def input_problems(sel: Selection, stats: ParseStats) -> dict[str, object]:
    """The ``"input_problems"`` block: ``{kind: {"count": n, "items": [...]}}`` (or just a
    ``count`` for line and event counts), plus ``"total"``."""
    lists: dict[str, list[object]] = {
        "skipped": [{"path": p, "reason": r} for p, r in sel.skipped],
        "missing_service_logs": list(sel.missing_logs),
        "runs_without_correct": list(sel.runs_without_correct),
        "empty_files": list(stats.empty_files),
        "continuation_only_files": list(stats.continuation_only_files),
        "unreadable_files": list(stats.unreadable_files),
        "invalid_utf8_files": list(stats.invalid_utf8_files),
        "lone_cr_files": list(stats.lone_cr_files),
    }
    out: dict[str, object] = {
        kind: {"count": len(items), "items": items[:LIMIT], "description": DESCRIPTIONS[kind]}
        for kind, items in lists.items()
    }
    out["bad_time_lines"] = {"count": stats.bad_time_lines,
                             "description": DESCRIPTIONS["bad_time_lines"]}
    out["long_messages"] = {"count": stats.long_messages, "limit_chars": MAX_MESSAGE_CHARS,
                            "description": DESCRIPTIONS["long_messages"]}
    out["total"] = sum(len(v) for v in lists.values()) + stats.bad_time_lines + \
        stats.long_messages
    return out


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\n`` -> ``\\x0a``): one summary line each."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _listed(items: list[str], shown: int = 3) -> str:
    head = ", ".join(printable(i) for i in items[:shown])
    return head + (f" and {len(items) - shown} more" if len(items) > shown else "")


def problem_lines(sel: Selection, stats: ParseStats) -> list[str]:
    """Summary lines, one per kind of problem found (none when the input is clean); the
    skipped entries are listed by the summary itself."""
    lines = []
    for label, items in (
        ("missing service logs", sel.missing_logs),
        ("runs without correct", sel.runs_without_correct),
        ("empty files", stats.empty_files),
        ("continuation-only files (no event)", stats.continuation_only_files),
        ("files with lone \\r line breaks (split at each)", stats.lone_cr_files),
    ):
        if items:
            lines.append(f"{label}: {len(items)} ({_listed(items)})")
    if stats.bad_time_lines:
        lines.append(f"lines with an impossible time of day: {stats.bad_time_lines:,} (kept as "
                     "events outside the logback layout, neighbour's timestamp)")
    if stats.long_messages:
        lines.append(f"long messages: {stats.long_messages:,} event(s) over {MAX_MESSAGE_CHARS:,} "
                     "characters (normalised and tokenised on their first "
                     f"{MAX_MESSAGE_CHARS:,} only)")
    return lines
