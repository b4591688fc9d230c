"""Figures, their targets (NUCLEUS.md §7), and the results as a console table, Markdown and JSON."""

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Target:
    """A bound on a figure's ratio to its raw baseline (or on its own value, with `on_value`)."""

    bound: float
    at_most: bool = False  # True: ratio <= bound (times); False: ratio >= bound (throughputs)
    on_value: bool = False  # judge the Nucleus value itself (e.g. memory growth in MB), not the ratio

    def met(self, figure: "Figure") -> bool | None:
        judged = figure.nucleus if self.on_value else figure.ratio
        if judged is None or (isinstance(judged, float) and math.isnan(judged)):
            return None
        return judged <= self.bound if self.at_most else judged >= self.bound

    def describe(self, unit: str) -> str:
        sign = "<=" if self.at_most else ">="
        if self.on_value:
            return f"{sign} {self.bound:g} {unit}"
        return f"{sign} {self.bound:.2f}x" if self.at_most else f"{sign} {self.bound:.0%}"


# NUCLEUS.md §7.
TARGETS = {
    "bulk_ingest": Target(0.40),
    "single_create": Target(0.15),
    "single_update": Target(0.15),
    "point_read": Target(0.15),
    "append_batch": Target(0.40),
    "dbbackup": Target(1.15, at_most=True),
    "dbrestore": Target(1.15, at_most=True),
    # "Listing never loads a whole collection into memory": a worker's peak RSS may grow by at most
    # this much while the whole collection is listed page by page (see docs/performance.md).
    "list_memory": Target(64, at_most=True, on_value=True),
}


@dataclass
class Figure:
    key: str
    title: str
    unit: str  # of nucleus and raw
    nucleus: float | None
    raw: float | None = None
    higher_is_better: bool = True
    note: str = ""
    details: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.nucleus is None or not self.raw:
            return None
        return self.nucleus / self.raw

    @property
    def target(self) -> Target | None:
        return TARGETS.get(self.key)

    @property
    def met(self) -> bool | None:
        return self.target.met(self) if self.target else None

    def as_dict(self) -> dict:
        data = asdict(self)
        data["ratio"] = None if self.ratio is None else round(self.ratio, 4)
        data["target"] = self.target.describe(self.unit) if self.target else None
        data["met"] = self.met
        return data


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "MB":
        return f"{value:.1f} MB"
    if value >= 100:
        return f"{value:,.0f} {unit}".strip()
    return f"{value:,.1f} {unit}".strip()


def _ratio(figure: Figure) -> str:
    if figure.ratio is None:
        return "-"
    return f"{figure.ratio:.2f}x" if not figure.higher_is_better else f"{figure.ratio:.1%}"


def _met(figure: Figure) -> str:
    return {True: "yes", False: "NO", None: "-" if figure.target is None else "?"}[figure.met]


def rows(figures: list[Figure]) -> list[list[str]]:
    return [
        [
            figure.title,
            _number(figure.nucleus, figure.unit),
            _number(figure.raw, figure.unit),
            _ratio(figure),
            figure.target.describe(figure.unit) if figure.target else "-",
            _met(figure),
        ]
        for figure in figures
    ]


HEADER = ["figure", "Nucleus", "raw PostgreSQL", "ratio", "target", "met"]


def console_table(figures: list[Figure]) -> str:
    table = [HEADER, *rows(figures)]
    widths = [max(len(row[column]) for row in table) for column in range(len(HEADER))]
    lines = []
    for number, row in enumerate(table):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def markdown_table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in body]
    return "\n".join(lines)


def scale_rows(scale: list[dict]) -> list[list[str]]:
    body = []
    for point in scale:
        body.append(
            [
                f"{point['records']:,}",
                _number(point.get("point_read", {}).get("nucleus"), "ops/s"),
                _number(point.get("point_read", {}).get("raw"), "ops/s"),
                _ms(point.get("point_read", {}).get("nucleus_p50_ms")),
                _number(point.get("list", {}).get("nucleus"), "rows/s"),
                _number(point.get("list", {}).get("raw"), "rows/s"),
                _ms(point.get("list", {}).get("nucleus_ms_per_page")),
                _ms(point.get("list", {}).get("raw_ms_per_page")),
            ]
        )
    return body


SCALE_HEADER = [
    "records",
    "point reads",
    "raw point reads",
    "point read p50",
    "listing",
    "raw listing",
    "ms/page",
    "raw ms/page",
]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def markdown(results: dict, figures: list[Figure]) -> str:
    params, server = results["parameters"], results["server"]
    lines = [
        f"# Nucleus benchmark — {results['started_at']}",
        "",
        f"Preset `{params['preset']}`: {params['records']:,} records in the listed collection, "
        f"bulk ingest of {params['bulk']:,}, {params['clients']} concurrent clients. "
        f"Server: gunicorn, {server['workers']} workers x {server['threads']} threads, DEBUG off. "
        f"Machine: {results['machine']['cpus']} CPUs, {results['machine']['memory_gib']} GiB, "
        f"PostgreSQL {results['postgresql']['version']}. Revision {results['revision']}.",
        "",
        markdown_table(HEADER, rows(figures)),
        "",
    ]
    if results.get("scale"):
        lines += [
            "## Reads as the collection grows",
            "",
            markdown_table(SCALE_HEADER, scale_rows(results["scale"])),
            "",
        ]
    notes = [f"- **{figure.title}**: {figure.note}" for figure in figures if figure.note]
    if notes:
        lines += ["## Notes", "", *notes, ""]
    lines += [f"Total run time {results['duration_s']:.0f} s. Raw JSON: `{results['json_name']}`.", ""]
    return "\n".join(lines)


def write(results: dict, figures: list[Figure], directory: Path, names: list[str]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        results = dict(results, json_name=f"{name}.json")
        json_path, md_path = directory / f"{name}.json", directory / f"{name}.md"
        json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
        md_path.write_text(markdown(results, figures))
        written += [json_path, md_path]
    return written
