"""prune-sim's input, as pure functions: times in their forms, vzdump file lists as
they come (names, paths, volids, `ls -l`, `pvesm list`), groups per guest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nixmox.backup.prune_sim import TIMES, read_groups, simulate
from nixmox.core.errors import ConfigError
from nixmox.rules.retention import Keep, Mark, prune

VIENNA = ZoneInfo("Europe/Vienna")

naive_times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)).map(
    lambda t: t.replace(microsecond=0)
)
offsets = st.sampled_from(
    [None, UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-5, minutes=-30))]
)


def _written(when: datetime, separator: str, seconds: bool, offset: timezone | None) -> str:
    text = when.strftime(f"%Y-%m-%d{separator}%H:%M" + (":%S" if seconds else ""))
    if offset is UTC:
        return text + "Z"
    return text + ("" if offset is None else when.replace(tzinfo=offset).isoformat()[-6:])


@settings(max_examples=300)
@given(
    when=naive_times,
    separator=st.sampled_from(["T", " "]),
    seconds=st.booleans(),
    offset=offsets,
    protected=st.booleans(),
    padding=st.sampled_from(["", " ", "\t", "  "]),
)
def test_a_time_in_any_of_its_forms(
    when: datetime,
    separator: str,
    seconds: bool,
    offset: timezone | None,
    protected: bool,
    padding: str,
) -> None:
    if not seconds:
        when = when.replace(second=0)
    text = _written(when, separator, seconds, offset)
    line = padding + text + (" protected" if protected else "") + padding
    [item] = read_groups([line], VIENNA)[TIMES]
    # Without an offset the time is the zone's; the ref is the time as written.
    assert item.time == when.replace(tzinfo=offset or VIENNA)
    assert (item.protected, item.ref) == (protected, text)


KINDS = {"qemu": ".vma.zst", "lxc": ".tar.zst"}


def _name(kind: str, vmid: int, when: datetime) -> str:
    return f"vzdump-{kind}-{vmid}-{when:%Y_%m_%d-%H_%M_%S}{KINDS[kind]}"


def _as_listed(name: str, style: str, size: int) -> str:
    """One line of a file list that names ``name``, as each tool prints it."""
    if style == "name":
        return name
    if style == "path":
        return f"/var/lib/vz/dump/{name}"
    if style == "volid":
        return f"local:backup/{name}"
    if style == "ls -l":
        return f"-rw-r--r-- 1 root root {size} Nov 20 02:31 {name}"
    return f"local:backup/{name} {name.split('.', 1)[1]} backup {size} {name.split('-')[2]}"


archives = st.lists(
    st.tuples(st.sampled_from(sorted(KINDS)), st.integers(100, 104), naive_times),
    min_size=1,
    max_size=30,
    unique_by=lambda a: (a[0], a[1], a[2]),
)


@settings(max_examples=200)
@given(
    archives=archives,
    style=st.sampled_from(["name", "path", "volid", "ls -l", "pvesm list"]),
    marked=st.sets(st.integers(0, 29)),
    data=st.data(),
)
def test_a_file_list_as_it_is(
    archives: list[tuple[str, int, datetime]], style: str, marked: set[int], data: st.DataObject
) -> None:
    names = [_name(kind, vmid, when) for kind, vmid, when in archives]
    lines = [_as_listed(n, style, 4096) for n in names]
    # What a dump directory holds besides the archives: logs, notes, protection
    # markers (anywhere in the list), a copy named by hand, the tools' headers.
    lines += [_as_listed(n.split(".")[0] + ".log", style, 1) for n in names]
    lines += [_as_listed(n + ".notes", style, 1) for n in names[:3]]
    protected = {names[i] for i in marked if i < len(names)}
    lines += [_as_listed(n + ".protected", style, 0) for n in sorted(protected)]
    lines.append(_as_listed("vzdump-qemu-100-before-upgrade.vma.zst", style, 1))
    lines = data.draw(st.permutations(lines))
    if style == "pvesm list":
        lines.insert(0, "Volid Format Type Size VMID")
    elif style == "ls -l":
        lines.insert(0, "total 4096")

    groups = read_groups(lines, VIENNA)
    assert groups.pop(TIMES) == []
    expected = {
        f"{kind}/{vmid}": {
            (when.replace(tzinfo=VIENNA), _name(kind, vmid, when) in protected)
            for k, v, when in archives
            if (k, v) == (kind, vmid)
        }
        for kind, vmid, _ in archives
    }
    assert {g: {(it.time, it.protected) for it in items} for g, items in groups.items()} == (
        expected
    )
    for items in groups.values():
        for it in items:
            # The ref is the word that named it, so a user finds the file again.
            assert it.ref.endswith(KINDS[it.ref.split("vzdump-")[1].split("-")[0]])
            assert it.ref.split("/")[-1] in names


@settings(max_examples=200)
@given(
    archives=archives,
    keep=st.builds(
        Keep,
        last=st.none() | st.integers(0, 3),
        daily=st.none() | st.integers(0, 5),
        weekly=st.none() | st.integers(0, 3),
    ),
)
def test_each_guest_is_decided_alone_and_merged_newest_first(
    archives: list[tuple[str, int, datetime]], keep: Keep
) -> None:
    groups = read_groups([_name(*a) for a in archives], VIENNA)
    merged = simulate(groups, keep, VIENNA)
    alone = {
        d.item.ref: (d.mark, d.reason) for g in groups.values() for d in prune(g, keep, VIENNA)
    }
    assert {d.item.ref: (d.mark, d.reason) for d in merged} == alone
    stamps = [d.item.time.timestamp() for d in merged]
    assert stamps == sorted(stamps, reverse=True)
    assert len(merged) == len(archives)


def test_one_group_is_exactly_the_rule() -> None:
    lines = ["2026-12-04 02:30", "2026-12-03 02:30 protected", "2026-12-02T02:30:00Z"]
    groups = read_groups(lines, UTC)
    assert simulate(groups, Keep(last=1), UTC) == prune(groups[TIMES], Keep(last=1), UTC)
    assert [d.mark for d in simulate(groups, Keep(last=1), UTC)] == [
        Mark.KEEP,
        Mark.PROTECTED,
        Mark.REMOVE,
    ]


@settings(max_examples=200)
@given(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs", "Nd"), blacklist_characters="#"),
        min_size=1,
        max_size=30,
    ).filter(lambda t: t.strip() and "vzdump-" not in t and not t.strip().startswith("Volid"))
)
def test_anything_else_is_refused_naming_its_line(junk: str) -> None:
    # No digit, so it is no time; no vzdump name, no listing header.
    with pytest.raises(ConfigError, match=r"^stdin:2: .* is neither a time"):
        read_groups(["2026-12-04 02:30", junk], UTC)


def test_an_archive_name_with_an_impossible_time_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^stdin:1: 'vzdump-qemu-101-2026_02_30-02_30_00\.vma'"):
        read_groups(["vzdump-qemu-101-2026_02_30-02_30_00.vma"], UTC)
