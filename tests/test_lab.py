"""The lab answers as the seeded host would, over HTTPS with an API token.

These tests talk to the lab only as nixmox will: ``requests``, TLS verified
with the lab's CA file, ``Authorization: PVEAPIToken=ID=SECRET``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import requests

from tests.lab.serving import RunningLab, lab_process, wait_closed

NODE = "pve1"
ARCHIVE = re.compile(
    r"^backups:backup/vzdump-(qemu|lxc)-(\d+)-\d{4}_\d\d_\d\d-\d\d_\d\d_\d\d\.(vma|tar)\.zst$"
)


class Api:
    """A minimal PVE API client: JSON in, `data` out, PVE's error message on failure."""

    def __init__(self, env: dict[str, str]) -> None:
        self.base = env["NIXMOX_PVE_URL"] + "/api2/json"
        self.session = requests.Session()
        # verify per request: a Session.verify loses to REQUESTS_CA_BUNDLE (psf/requests#3829).
        self.ca_file = env["NIXMOX_PVE_CA_FILE"]
        token = f"PVEAPIToken={env['NIXMOX_PVE_TOKEN_ID']}={env['NIXMOX_PVE_TOKEN']}"
        self.session.headers["Authorization"] = token

    def call(self, method: str, path: str, **params: Any) -> Any:
        send = {"params": params} if method == "GET" else {"data": params}
        resp = self.session.request(
            method, self.base + path, timeout=10, verify=self.ca_file, **send
        )
        if resp.status_code != 200:
            raise ApiError(resp.status_code, resp.json())
        return resp.json()["data"]

    def raw(self, path: str, **params: Any) -> dict[str, Any]:
        """The whole JSON answer of a GET (data and PVE's result attributes)."""
        resp = self.session.get(self.base + path, params=params, timeout=10, verify=self.ca_file)
        resp.raise_for_status()
        body: dict[str, Any] = resp.json()
        return body

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, **params)

    def post(self, path: str, **params: Any) -> Any:
        return self.call("POST", path, **params)

    def put(self, path: str, **params: Any) -> Any:
        return self.call("PUT", path, **params)

    def delete(self, path: str, **params: Any) -> Any:
        return self.call("DELETE", path, **params)

    def wait(self, upid: str, timeout: float = 10.0) -> dict[str, Any]:
        """Poll a task until it stops; its status (with exitstatus) and log lines."""
        deadline = time.monotonic() + timeout
        while True:
            status: dict[str, Any] = self.get(f"/nodes/{NODE}/tasks/{quote(upid, safe='')}/status")
            if status["status"] == "stopped":
                log = self.get(f"/nodes/{NODE}/tasks/{quote(upid, safe='')}/log", limit=500)
                status["lines"] = [entry["t"] for entry in log]
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(upid)
            time.sleep(0.05)


class ApiError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status}: {body.get('message')} {body.get('errors') or ''}")
        self.status = status
        self.body = body


@pytest.fixture
def api(lab: RunningLab) -> Api:
    return Api(lab.env)


def content(api: Api, storage: str, kind: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = api.get(f"/nodes/{NODE}/storage/{storage}/content", content=kind)
    return items


# ------------------------------------------------------------------ seeding


def test_node_and_storages_come_from_the_inventory(api: Api) -> None:
    assert [n["node"] for n in api.get("/nodes")] == [NODE]
    status = api.get(f"/nodes/{NODE}/status")
    assert status["cpuinfo"]["model"] == "AMD Ryzen 9 5950X 16-Core Processor"
    assert (status["cpuinfo"]["cores"], status["cpuinfo"]["cpus"]) == (16, 32)
    assert "svm" in status["cpuinfo"]["flags"].split()
    assert status["memory"]["total"] == 128 * 1024**3
    storages = {s["storage"]: s for s in api.get("/storage")}
    assert set(storages) == {"local", "vm-disks", "ct-disks", "backups"}
    assert storages["vm-disks"]["type"] == "zfspool"
    assert storages["vm-disks"]["pool"] == "rpool/data/vm"
    assert storages["backups"]["type"] == "dir"
    assert set(storages["backups"]["content"].split(",")) == {"backup", "vztmpl"}
    active = {s["storage"]: s["active"] for s in api.get(f"/nodes/{NODE}/storage")}
    assert active == dict.fromkeys(storages, 1)


def test_templates_are_there_and_no_guests(api: Api) -> None:
    volids = [v["volid"] for v in content(api, "local", "vztmpl")]
    assert volids == ["local:vztmpl/nixos-lxc-25.05.tar.xz"]
    vms = api.get(f"/nodes/{NODE}/qemu")
    assert [(vm["vmid"], vm["name"], vm.get("template")) for vm in vms] == [
        (9000, "nixos-template", 1)
    ]
    assert api.get(f"/nodes/{NODE}/lxc") == []
    config = api.get(f"/nodes/{NODE}/qemu/9000/config")
    assert config["scsi0"].startswith("vm-disks:base-9000-disk-0,")


def test_template_clones_and_container_creates(api: Api) -> None:
    """Provisioning's two paths work against the seed: clone 9000, create from the template file."""
    done = api.wait(api.post(f"/nodes/{NODE}/qemu/9000/clone", newid=101, name="nixos-vm"))
    assert done["exitstatus"] == "OK"
    upid = api.post(
        f"/nodes/{NODE}/lxc",
        vmid=100,
        hostname="nixos-lxc",
        ostemplate="local:vztmpl/nixos-lxc-25.05.tar.xz",
        rootfs="ct-disks:16",
    )
    assert api.wait(upid)["exitstatus"] == "OK"
    assert api.get(f"/nodes/{NODE}/lxc/100/config")["ostype"] == "nixos"


# ------------------------------------------------------------------ hardware


def test_pci_devices_with_iommu_groups(api: Api) -> None:
    devices = {
        d["id"]: d for d in api.get(f"/nodes/{NODE}/hardware/pci", **{"pci-class-blacklist": ""})
    }
    gpu, audio, usb = devices["0000:01:00.0"], devices["0000:01:00.1"], devices["0000:03:00.0"]
    assert (gpu["class"], gpu["vendor"], gpu["device"]) == ("0x030000", "0x10de", "0x2504")
    assert gpu["subsystem_vendor"] and gpu["subsystem_device"]
    assert "RTX 3060" in gpu["device_name"] and gpu["vendor_name"] == "NVIDIA Corporation"
    assert (audio["class"], audio["device"]) == ("0x040300", "0x228e")
    assert usb["class"] == "0x0c0330"
    group = {
        gid: sorted(i for i, d in devices.items() if d["iommugroup"] == gid)
        for gid in (gpu["iommugroup"], usb["iommugroup"])
    }
    assert group[gpu["iommugroup"]] == ["0000:01:00.0", "0000:01:00.1"]
    assert group[usb["iommugroup"]] == ["0000:03:00.0"]
    assert devices["0000:00:00.2"]["iommugroup"] == -1  # the IOMMU itself has no group
    nics = [d for d in devices.values() if d["device"] == "0x15f3"]
    assert len(nics) == 2 and any(d["class"] == "0x010802" for d in devices.values())
    assert any(d["class"] == "0x010601" for d in devices.values())


def test_pci_class_blacklist_and_verbose(api: Api) -> None:
    default = api.get(f"/nodes/{NODE}/hardware/pci")
    assert not any(d["class"].startswith(("0x05", "0x06", "0x0b")) for d in default)
    assert any(
        d["class"].startswith("0x06")
        for d in api.get(f"/nodes/{NODE}/hardware/pci", **{"pci-class-blacklist": ""})
    )
    no_gpu = api.get(f"/nodes/{NODE}/hardware/pci", **{"pci-class-blacklist": "03;06"})
    assert "0000:01:00.0" not in {d["id"] for d in no_gpu} and "0000:01:00.1" in {
        d["id"] for d in no_gpu
    }
    terse = api.get(f"/nodes/{NODE}/hardware/pci", verbose=0)
    assert terse and not any("vendor_name" in d or "device_name" in d for d in terse)


# ------------------------------------------------------------------ backups


def test_vzdump_writes_an_archive_that_delete_removes(lab: RunningLab, api: Api) -> None:
    lab.pve.add_declared_guests()
    upid = api.post(
        f"/nodes/{NODE}/vzdump",
        vmid="101",
        storage="backups",
        mode="snapshot",
        compress="zstd",
        **{"notes-template": "{{guestname}} on {{node}}"},
    )
    done = api.wait(upid)
    assert done["exitstatus"] == "OK", done["lines"]
    assert ":vzdump:101:" in upid
    assert any("Finished Backup of VM 101" in line for line in done["lines"])
    (item,) = content(api, "backups", "backup")
    assert ARCHIVE.match(item["volid"]) and item["volid"].startswith(
        "backups:backup/vzdump-qemu-101-"
    )
    assert item["vmid"] == 101 and item["format"] == "vma.zst" and item["size"] > 0
    assert item["notes"] == "nixos-vm on pve1" and item.get("protected", 0) == 0
    assert abs(item["ctime"] - time.time()) < 60
    upid = api.delete(f"/nodes/{NODE}/storage/backups/content/{item['volid']}")
    assert api.wait(upid)["exitstatus"] == "OK"
    assert content(api, "backups", "backup") == []


def test_vzdump_of_several_guests_and_a_failing_one(lab: RunningLab, api: Api) -> None:
    lab.pve.add_declared_guests()
    lab.pve.fail_backup(102, "unable to open file - No space left on device")
    done = api.wait(api.post(f"/nodes/{NODE}/vzdump", vmid="100,101,102", storage="backups"))
    assert done["exitstatus"] == "job errors"
    assert (
        "ERROR: Backup of VM 102 failed - unable to open file - No space left on device"
        in done["lines"]
    )
    names = sorted(i["volid"] for i in content(api, "backups", "backup"))
    assert [n.split("-")[1:3] for n in names] == [["lxc", "100"], ["qemu", "101"]]
    assert names[0].endswith(".tar") and names[1].endswith(".vma")  # compress defaults to none


def test_vzdump_of_a_locked_guest_fails(lab: RunningLab, api: Api) -> None:
    lab.pve.add_declared_guests()
    lab.pve.snapshot_lock(101, "backup")
    done = api.wait(api.post(f"/nodes/{NODE}/vzdump", vmid="101", storage="backups"))
    assert done["exitstatus"] != "OK"
    assert "ERROR: Backup of VM 101 failed - VM is locked (backup)" in done["lines"]
    assert content(api, "backups", "backup") == []


def test_protected_and_seeded_archives(lab: RunningLab, api: Api) -> None:
    when = dt.datetime(2026, 1, 4, 2, 30)
    volid = lab.pve.seed_backup("backups", 100, "lxc", when, protected=True)
    assert volid == "backups:backup/vzdump-lxc-100-2026_01_04-02_30_00.tar.zst"
    (item,) = content(api, "backups", "backup")
    assert item["protected"] == 1 and item["subtype"] == "lxc"
    assert item["ctime"] == int(when.replace(tzinfo=lab.pve.timezone).timestamp())
    done = api.wait(api.delete(f"/nodes/{NODE}/storage/backups/content/{volid}"))
    assert done["exitstatus"].startswith("cannot remove protected volume")
    assert len(content(api, "backups", "backup")) == 1


def test_backup_jobs_are_stored(api: Api) -> None:
    api.post(
        "/cluster/backup",
        id="nightly",
        schedule="*-*-* 02:30:00",
        storage="backups",
        vmid="100,101,102",
        mode="snapshot",
        compress="zstd",
    )
    assert api.get("/cluster/backup/nightly")["schedule"] == "*-*-* 02:30:00"
    api.put("/cluster/backup/nightly", enabled=0)
    (job,) = api.get("/cluster/backup")
    assert (job["id"], job["enabled"], job["vmid"]) == ("nightly", 0, "100,101,102")
    api.delete("/cluster/backup/nightly")
    assert api.get("/cluster/backup") == []


# ------------------------------------------------------------ apt, network


def test_apt_update_refreshes_the_upgrade_list(lab: RunningLab, api: Api) -> None:
    lab.pve.set_upgrades([("pve-manager", "9.0.11"), ("proxmox-kernel-6.14", "6.14.11-1")])
    assert api.get(f"/nodes/{NODE}/apt/update") == []  # not seen until apt update ran
    done = api.wait(api.post(f"/nodes/{NODE}/apt/update"))
    assert done["exitstatus"] == "OK" and ":aptupdate:" in done["upid"]
    upgrades = {p["Package"]: p for p in api.get(f"/nodes/{NODE}/apt/update")}
    assert upgrades["pve-manager"]["OldVersion"] == "9.0.10"
    assert upgrades["pve-manager"]["Version"] == "9.0.11"
    versions = {p["Package"]: p for p in api.get(f"/nodes/{NODE}/apt/versions")}
    assert versions["pve-manager"]["Version"] == "9.0.10"
    assert versions["proxmox-ve"]["RunningKernel"] == lab.pve.running_kernel


def test_network_changes_stay_pending_until_reload(api: Api) -> None:
    before = {i["iface"] for i in api.get(f"/nodes/{NODE}/network")}
    assert before == {"enp5s0", "enp6s0"}
    api.post(
        f"/nodes/{NODE}/network",
        iface="vmbr0",
        type="bridge",
        bridge_ports="enp5s0",
        cidr="192.0.2.2/24",
        gateway="192.0.2.1",
        autostart=1,
        comments="NixOS guests",
    )
    answer = api.raw(f"/nodes/{NODE}/network")
    pending = {i["iface"]: i for i in answer["data"]}
    assert "+auto vmbr0" in answer["changes"]
    assert "active" not in pending["vmbr0"] and pending["vmbr0"]["address"] == "192.0.2.2"
    assert api.get(f"/nodes/{NODE}/network", type="any_bridge")[0]["iface"] == "vmbr0"
    with pytest.raises(ApiError) as err:
        api.post(f"/nodes/{NODE}/network", iface="vmbr0", type="bridge")
    assert err.value.body["errors"] == {"iface": "interface already exists"}
    done = api.wait(api.put(f"/nodes/{NODE}/network"))
    assert done["exitstatus"] == "OK" and ":srvreload:networking:" in done["upid"]
    applied = api.raw(f"/nodes/{NODE}/network")
    assert "changes" not in applied
    vmbr0 = next(i for i in applied["data"] if i["iface"] == "vmbr0")
    assert (
        vmbr0["active"] == 1
        and vmbr0["bridge_ports"] == "enp5s0"
        and vmbr0["cidr"] == "192.0.2.2/24"
    )


def test_network_revert_drops_pending_changes(api: Api) -> None:
    api.post(
        f"/nodes/{NODE}/network", iface="vmbr1", type="bridge", bridge_ports="enp6s0", autostart=1
    )
    api.delete(f"/nodes/{NODE}/network")
    assert {i["iface"] for i in api.get(f"/nodes/{NODE}/network")} == {"enp5s0", "enp6s0"}
    assert "changes" not in api.raw(f"/nodes/{NODE}/network")


# --------------------------------------------------------------- standalone


def test_standalone_lab_prints_exports_and_stops_cleanly(tmp_path: Path) -> None:
    with lab_process(tmp_path, host="127.0.0.1", guests=True) as proc:
        env = proc.env
        assert set(env) == {
            "NIXMOX_PVE_URL",
            "NIXMOX_PVE_TOKEN_ID",
            "NIXMOX_PVE_TOKEN",
            "NIXMOX_PVE_CA_FILE",
        }
        assert proc.output[-1] == "# lab ready"
        assert env["NIXMOX_PVE_TOKEN_ID"] == "root@pam!nixmox"
        assert (tmp_path / "env.sh").read_text() == "\n".join(proc.output[:-1]) + "\n"
        assert os.stat(tmp_path / "env.sh").st_mode & 0o077 == 0
        guests = Api(env).get("/cluster/resources", type="vm")
        assert {g["vmid"] for g in guests} == {100, 101, 102, 9000}
        pid, url = proc.process.pid, urlsplit(env["NIXMOX_PVE_URL"])
    assert proc.process.returncode == 0
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert url.hostname and url.port and wait_closed(url.hostname, url.port)


def test_lab_process_fixture_serves(lab_process: dict[str, str]) -> None:
    assert Api(lab_process).get("/version")["version"].startswith("9.")
