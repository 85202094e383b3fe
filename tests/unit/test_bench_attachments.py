"""The ``attachments`` bench's pure parts (bench/attachments.py): its tally, its rows in the
table and its options. The upload itself runs in the sandbox, in ``python -m bench``."""

from __future__ import annotations

import math

from bench import __main__ as bench_main
from bench import report
from bench.attachments import tally


def test_tally_times_the_last_region_and_checks_every_copy() -> None:
    row = tally(1.25, 10.0, {"eu-west-1": 10.5, "ap-northeast-1": 12.0}, set())
    assert row == {
        "upload_s": 1.25,
        "readable_everywhere_s": 2.0,
        "sha256_ok": True,
        "regions_read": 2,
    }


def test_tally_a_region_that_never_matched_is_no_time_and_not_ok() -> None:
    row = tally(1.0, 10.0, {"eu-west-1": 10.5, "ap-northeast-1": None}, set())
    assert math.isnan(row["readable_everywhere_s"])
    assert row["sha256_ok"] is False and row["regions_read"] == 1


def test_tally_other_bytes_in_a_region_fail_the_check_even_if_it_later_matched() -> None:
    row = tally(1.0, 10.0, {"eu-west-1": 10.5, "ap-northeast-1": 11.0}, {"eu-west-1"})
    assert row["sha256_ok"] is False and row["readable_everywhere_s"] == 1.0


def test_tally_with_no_other_region_is_not_ok() -> None:
    assert tally(1.0, 10.0, {}, set())["sha256_ok"] is False


def test_runs_aggregate_to_medians_and_a_flag_that_held_in_every_run() -> None:
    runs = [tally(1.0, 0.0, {"a": 2.0}, set()), tally(3.0, 0.0, {"a": 4.0}, {"a"})]
    runs.append(tally(2.0, 0.0, {"a": 3.0}, set()))
    medians, spread = report.aggregate(runs)
    assert medians["upload_s"] == 2.0 and spread["readable_everywhere_s"] == [2.0, 4.0]
    assert medians["sha256_ok"] is False
    table = report.format_table({"attachments": medians}, {"attachments": spread}, {}, {})
    assert "attachments: send -> own copy everywhere (s)" in table
    assert "attachments: same sha256 in every region" in table and "False" in table


def test_the_part_is_run_by_default_and_its_size_is_an_option() -> None:
    assert "attachments" in bench_main.parse_args([]).parts
    assert bench_main.parse_args([]).attachment_mb == 5.0
    assert bench_main.parse_args(["--quick"]).attachment_mb == 1.0
    assert bench_main.parse_args(["--attachment-mb", "2.5"]).attachment_mb == 2.5
