"""Journal rows read back leniently: ``jsonrows.record`` over real summary row types."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from nixmox.backup.job import GuestResult
from nixmox.backup.verify import VerifyResult
from nixmox.core import jsonrows
from nixmox.pool.smart import DiskHealth
from nixmox.replicate.job import DatasetResult

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


def test_a_row_reads_back_as_it_was_written() -> None:
    written = VerifyResult("web", 101, ok=True, archive="a.vma.zst", scratch=9001, seconds=3.5)
    assert jsonrows.record(VerifyResult, asdict(written)) == written
    replicated = DatasetResult("tank/a", "backup/a", sent=["s1"], lag_seconds=12.0)
    assert jsonrows.record(DatasetResult, asdict(replicated)) == replicated


def test_a_field_under_another_key_and_missing_fields_keep_their_defaults() -> None:
    row = {"guest": "web", "vmid": "101", "archive": "x.vma", "removed": ["old", 3]}
    found = jsonrows.record(GuestResult, row, name="guest", volid="archive")
    assert (found.name, found.vmid, found.volid, found.removed) == (
        "web",
        101,
        "x.vma",
        ["old", "3"],
    )
    assert (found.result, found.node, found.size) == ("ok", "", 0)
    # A scratch guest's cleanup counts as done unless the row says otherwise (old rows).
    assert jsonrows.record(VerifyResult, {"name": "web"}).cleaned is True


@given(
    st.dictionaries(
        st.sampled_from([f.name for f in DiskHealth.__dataclass_fields__.values()]), JSON
    )
)
def test_any_json_row_reads_without_raising(row: dict[str, Any]) -> None:
    health = jsonrows.record(DiskHealth, row)
    assert health.passed in (True, False, None)
    assert health.temperature is None or isinstance(health.temperature, int)
