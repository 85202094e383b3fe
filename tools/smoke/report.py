"""The smoke test's verdict per region and the table it prints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tools.smoke.exchange import RegionExchange
from tools.smoke.replicas import ReplicaCheck
from tools.smoke.targets import GLOBAL_ROW, RegionTarget

__all__ = ["COLUMNS", "RegionReport", "build_reports", "render"]

COLUMNS = ("region", "connect", "sent", "received", "replica", "latency", "attachment", "result")


@dataclass
class RegionReport:
    """One row of the table; ``problems`` are printed under it, one line each."""

    region: str
    connect: str = "-"
    sent: str = "-"
    received: str = "-"
    replica: str = "-"
    latency: str = "-"
    attachment: str = "-"
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def cells(self) -> tuple[str, ...]:
        return (
            self.region,
            self.connect,
            self.sent,
            self.received,
            self.replica,
            self.latency,
            self.attachment,
            "PASS" if self.ok else "FAIL",
        )


def _ms(value: float) -> str:
    return f"{value:.0f} ms"


def build_reports(
    targets: Sequence[RegionTarget],
    exchanges: Mapping[str, RegionExchange],
    replicas: Mapping[str, ReplicaCheck],
) -> list[RegionReport]:
    """One verdict per target region from what the exchange and the replica check found."""
    expected = {region for region, result in exchanges.items() if result.sent}
    reports = []
    for target in targets:
        report = RegionReport(target.region)
        if target.problem:
            report.problems.append(target.problem)
        result = exchanges.get(target.region)
        if result is None:
            report.connect = "FAIL"
            if not target.problem:
                report.problems.append("not checked")
        elif not result.connected:
            report.connect = "FAIL"
            report.problems.append(f"connect: {result.connect_error}")
        else:
            _exchange_columns(report, result, expected, target.region == GLOBAL_ROW)
        replica = replicas.get(target.region)
        if replica is not None:
            report.replica = replica.status
            if not replica.ok:
                report.problems.append(
                    f"signing secret replica {replica.status}"
                    + (f": {replica.detail}" if replica.detail else "")
                )
        reports.append(report)
    return reports


def _exchange_columns(
    report: RegionReport, result: RegionExchange, expected: set[str], listens_only: bool
) -> None:
    """connect, sent, received and latency of a region that connected."""
    report.connect = "ok"
    if listens_only:
        report.sent = "(listens)"
    elif result.sent:
        report.sent = f"ok ({_ms(result.ack_ms or 0)} ack)"
    else:
        report.sent = "FAIL"
        report.problems.append(f"send: {result.send_error}")
    missing = result.missing(expected)
    duplicated = result.duplicated()
    unexpected = result.unexpected(expected)
    report.received = f"{len(expected) - len(missing)}/{len(expected)}"
    if missing:
        report.problems.append(f"never received the message from {', '.join(missing)}")
    if duplicated:
        report.received += " dup"
        report.problems.append(
            "received more than one copy of the message from " + ", ".join(duplicated)
        )
    if unexpected:
        report.problems.append(
            "received a message whose send was refused, from " + ", ".join(unexpected)
        )
    if result.latencies_ms:
        report.latency = f"max {_ms(max(result.latencies_ms.values()))}"
    outcome = result.attachment
    if outcome is None:
        return
    if outcome.problem:
        report.attachment = "FAIL"
        report.problems.append(f"attachment: {outcome.problem}")
    elif outcome.origin:
        report.attachment = "uploaded"
    else:
        report.attachment = f"own copy {outcome.seconds or 0:.1f} s"


def render(reports: Sequence[RegionReport], notes: Sequence[str] = ()) -> str:
    """The table, then each region's problems, then ``notes`` and the verdict."""
    rows = [COLUMNS, *(report.cells() for report in reports)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in rows]  # fmt: skip
    for report in reports:
        lines += [f"{report.region}: {problem}" for problem in report.problems]
    lines += list(notes)
    failed = [report.region for report in reports if not report.ok]
    lines.append(f"FAIL: {', '.join(failed)}" if failed else f"PASS: {len(reports)} region(s)")
    return "\n".join(lines)
