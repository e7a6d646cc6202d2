"""Reading request-rate traces: a CSV's time column is honoured (order, duplicates, gaps, per-minute rows and
timestamps), UTF-8 with a byte-order mark and CRLF is read, and a directory is named as one.

Before these fixes the time column was ignored: rows were taken as consecutive seconds whatever their time said,
so out-of-order, duplicate, gapped or per-minute rows gave a silently wrong trace.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servopt.cli import main
from servopt.exceptions import ValidationError
from servopt.serving.traces import read_trace


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


# ------------------------------------------------------------------------------------------ the time column
def test_rows_out_of_order_are_sorted_by_their_time(tmp_path: Path) -> None:
    path = _write(tmp_path, "ooo.csv", "second,rps\n2,300\n0,10\n1,10\n")
    assert read_trace(path).rps.tolist() == [10.0, 10.0, 300.0]


@settings(max_examples=40, deadline=None)
@given(rates=st.lists(st.integers(0, 500), min_size=2, max_size=30), first=st.integers(-5, 10_000),
       seed=st.integers(0, 2**32 - 1))
def test_any_row_order_reads_the_same_trace(tmp_path_factory, rates, first, seed) -> None:
    """Property: a permutation of the rows of a contiguous time range reads as the rates in time order."""
    order = np.random.default_rng(seed).permutation(len(rates))
    lines = [f"{first + int(i)},{rates[int(i)]}" for i in order]
    path = _write(tmp_path_factory.mktemp("perm"), "p.csv", "second,rps\n" + "\n".join(lines) + "\n")
    assert read_trace(path).rps.tolist() == [float(r) for r in rates]


@pytest.mark.parametrize("name, text, match", [
    ("dup.csv", "second,rps\n0,1\n1,2\n1,3\n2,4\n",
     r"row 3 \(second 1\) and row 4 \(second 1\) give the same time; a trace needs exactly one row per second"),
    ("gap.csv", "second,rps\n0,1\n1,2\n\n5,3\n",
     r"row 3 \(second 1\) and row 5 \(second 5\): 3 seconds missing; .*add the missing rows"),
    ("mgap.csv", "minute,rps\n0,1\n2,2\n", r"row 2 \(minute 0\) and row 3 \(minute 2\): 1 minute missing"),
    ("tsgap.csv", "timestamp,rps\n2021-08-15 10:00:00,5\n2021-08-15 10:01:00,6\n2021-08-15 10:03:00,7\n",
     r"row 3 \(timestamp 2021-08-15 10:01:00\) and row 4 \(timestamp 2021-08-15 10:03:00\): 120 s apart where "
     r"rows are 60 s apart \(1 row missing\)"),
    ("frac.csv", "second,rps\n0,1\n0.5,2\n", r"row 3, column 'second': '0.5' is not a whole number of seconds"),
    ("two.csv", "second,timestamp,rps\n0,2021-08-15 10:00:00,1\n", r"2 time columns \(second, timestamp\)"),
    ("one.csv", "timestamp,rps\n2021-08-15 10:00:00,5\n", "one row with a date-time .* cannot tell how long"),
    ("mix.csv", "timestamp,rps\n2021-08-15T10:00:00Z,5\n2021-08-15T10:00:01,6\n", "mixes date-times with and"),
    ("when.csv", "timestamp,rps\nyesterday,5\n", r"row 2, column 'timestamp': 'yesterday' is neither a number"),
])
def test_repeated_missing_or_unreadable_times_are_refused_naming_the_rows(tmp_path: Path, name, text,
                                                                           match) -> None:
    path = _write(tmp_path, name, text)
    with pytest.raises(ValidationError, match=match) as info:
        read_trace(path)
    assert str(path) in str(info.value)


def test_per_minute_rows_hold_their_rate_for_the_minute(tmp_path: Path) -> None:
    trace = read_trace(_write(tmp_path, "pm.csv", "minute,rps\n0,54\n1,62\n2,62\n"))
    assert trace.duration_s == 180
    assert trace.rps.tolist() == [54.0] * 60 + [62.0] * 120


def test_timestamps_a_minute_apart_are_per_minute_rows(tmp_path: Path) -> None:
    text = "timestamp,rps\n2021-08-15 10:01:00,62\n2021-08-15 10:00:00,54\n"  # out of order too
    trace = read_trace(_write(tmp_path, "ts.csv", text))
    assert trace.rps.tolist() == [54.0] * 60 + [62.0] * 60


def test_timestamps_a_second_apart_and_numeric_time_are_seconds(tmp_path: Path) -> None:
    text = "timestamp,rps\n2021-08-15T10:00:01+00:00,6\n2021-08-15T10:00:00Z,5\n"
    assert read_trace(_write(tmp_path, "tz.csv", text)).rps.tolist() == [5.0, 6.0]
    assert read_trace(_write(tmp_path, "unix.csv", "time,rps\n1629021601,2\n1629021600,1\n")).rps.tolist() == [1, 2]


def test_a_column_guessed_for_longer_rows_is_refused(tmp_path: Path) -> None:
    """Beside per-minute rows, a column not named rps may count requests per minute: not guessed."""
    path = _write(tmp_path, "req.csv", "minute,requests\n0,600\n1,1200\n")
    with pytest.raises(ValidationError, match="may count requests per row.*column='requests'.*divide by 60"):
        read_trace(path)
    assert read_trace(path, column="requests").rps.tolist() == [600.0] * 60 + [1200.0] * 60
    # per-second rows: the only other column is the rate, in time order
    assert read_trace(_write(tmp_path, "s.csv", "second,requests\n1,6\n0,12\n")).rps.tolist() == [12.0, 6.0]


def test_the_time_column_cannot_be_the_rate(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="column 'second' is the time column"):
        read_trace(_write(tmp_path, "t.csv", "second,rps\n0,1\n"), column="second")


def test_slices_count_seconds_after_sorting_and_expansion(tmp_path: Path) -> None:
    path = _write(tmp_path, "pm.csv", "minute,rps\n1,7\n0,5\n")
    assert read_trace(path, start=58, end=62).rps.tolist() == [5.0, 5.0, 7.0, 7.0]


def test_shipped_traces_read_as_their_rows_in_file_order(reference_data: Path) -> None:
    """Regression guard: IPA's windows are `second,rps` with seconds 0..n-1 in order; reading them is unchanged."""
    for path in sorted((reference_data / "ipa" / "traces").glob("*.csv")):
        with path.open() as fh:
            rows = list(csv.DictReader(fh))
        assert [int(r["second"]) for r in rows] == list(range(len(rows)))
        assert read_trace(path).rps.tolist() == [float(r["rps"]) for r in rows]


# ------------------------------------------------------------------------------ encodings and directories
def test_utf8_bom_and_crlf_are_read(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbfsecond,rps\r\n0,40\r\n1,41\r\n")
    assert read_trace(path).rps.tolist() == [40.0, 41.0]
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf1 2\r\n3\r\n")
    assert read_trace(tmp_path / "bom.txt").rps.tolist() == [1.0, 2.0, 3.0]


def test_text_that_is_not_utf8_says_so(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes(b"second,rps\n0,1\xe9\n")
    with pytest.raises(ValidationError, match=r"not UTF-8 text \(byte 0xe9 at offset 14\)"):
        read_trace(path)


def test_a_directory_is_named_as_a_directory(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "dir"
    folder.mkdir()
    with pytest.raises(ValidationError, match="is a directory, not a trace file"):
        read_trace(folder)
    with pytest.raises(ValidationError, match="no such trace file"):
        read_trace(tmp_path / "missing.csv")


def test_cli_simulate_reads_the_time_column(tmp_path: Path, root: Path, capsys) -> None:
    """The reviewer's case: 300 RPS in second 2 of an out-of-order file was served in second 0."""
    ooo = _write(tmp_path, "ooo.csv", "second,rps\n2,300\n0,10\n1,10\n")
    inorder = _write(tmp_path, "in.csv", "second,rps\n0,10\n1,10\n2,300\n")
    outs = []
    for path in (ooo, inorder):
        assert main(["simulate", str(root / "examples" / "pipeline_video.yaml"), "--trace", str(path),
                     "--json"]) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1]
    pm = _write(tmp_path, "pm.csv", "minute,rps\n0,54\n1,62\n2,62\n")
    assert main(["simulate", str(root / "examples" / "variant_selection_infadapter_profile.yaml"),
                 "--trace", str(pm)]) == 0
    assert f"trace {pm}: 180 s," in capsys.readouterr().out


def test_min_and_max_columns_are_rate_statistics_not_times(tmp_path: Path) -> None:
    # a review found `second,rps,min,max` refused as "2 time columns (second, min)"
    path = tmp_path / "stats.csv"
    path.write_text("second,rps,min,max\n1,20,15,25\n0,10,5,12\n")
    assert read_trace(path).rps.tolist() == [10.0, 20.0]
