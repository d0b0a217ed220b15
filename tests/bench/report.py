"""The benchmark's report: one table row per figure, with its baseline, ratio and goal."""

from dataclasses import asdict, dataclass, field

PASS, FAIL, INFO = "PASS", "FAIL", "info"


@dataclass
class Row:
    """One figure. `ok` is None for information; `check` rows prove the harness measured what
    it meant to (answers, counters), and break a smoke run when they fail."""
    measure: str
    figure: str
    baseline: str = "-"
    ratio: str = "-"
    goal: str = "-"
    ok: object = None
    check: bool = False
    details: list = field(default_factory=list)

    @property
    def result(self):
        if self.ok is None:
            return INFO
        return PASS if self.ok else FAIL


class Report:
    def __init__(self):
        self.header = []  # (key, value)
        self.rows = []
        self.notes = []

    def add(self, row):
        self.rows.append(row)
        return row

    def note(self, text):
        self.notes.append(text)

    def failed_goals(self):
        return [r for r in self.rows if r.ok is False and not r.check]

    def failed_checks(self):
        return [r for r in self.rows if r.ok is False and r.check]

    def render(self, judged=True):
        lines = ["%-9s %s" % (k + ":", v) for k, v in self.header]
        if not self.rows:
            return "\n".join(lines + ["", "(no figures)"])
        cols = ("measure", "figure", "baseline", "ratio", "goal", "result")
        table = [cols] + [(r.measure, r.figure, r.baseline, r.ratio, r.goal,
                           r.result if judged or r.check else "(%s)" % r.result.lower())
                          for r in self.rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
        lines.append("")
        for i, row in enumerate(table):
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
        details = [(r.measure, d) for r in self.rows for d in r.details]
        if details:
            lines.append("")
            lines.extend("%s: %s" % pair for pair in details)
        if self.notes:
            lines.append("")
            lines.extend("note: " + n for n in self.notes)
        return "\n".join(lines)

    def as_dict(self):
        return {"header": dict(self.header),
                "rows": [dict(asdict(r), result=r.result) for r in self.rows],
                "notes": self.notes}


def ratio(a, b):
    return "%.2f" % (a / b) if b else "-"


def mb(n_bytes):
    return "%.1f MB" % (n_bytes / 1e6)
