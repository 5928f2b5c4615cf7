"""/metrics under several workers reads every worker's file, even one being made."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families

from honeymesh_hub.metrics import Metrics

HELP = "Requests by route and status"


def _write_counter(path: Path, value: float) -> None:
    key = mmap_key(
        "honeymesh_http_requests",
        "honeymesh_http_requests_total",
        ["route", "status"],
        ["/v1/hub", "200"],
        HELP,
    )
    values = MmapedDict(str(path))
    values.write_value(key, value, 0.0)
    values.close()


def _total(text: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "honeymesh_http_requests_total"
    )


def test_a_file_a_starting_worker_has_not_sized_yet_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_counter(tmp_path / "counter_101.db", 3)
    _write_counter(tmp_path / "counter_102.db", 4)
    # What a worker leaves for an instant as it starts: its file, created, still empty.
    (tmp_path / "counter_103.db").touch()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))

    assert _total(Metrics().render().decode()) == 7
