"""Golden command lines for representative VMs. After an intended change, run
`pytest tests/unit/test_argv_golden.py --regenerate-golden` and review the diff of tests/golden/argv."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from hvdesk.core.config import BackingImage, Balloon, CdDrive, Disk, Display, KernelBoot, Nic, PortForward, VmConfig
from hvdesk.qemu.argv import HostSetup, build_argv
from hvdesk.qemu.transport import Endpoint, Transport
from hvdesk.qemu.vm_paths import VmPaths
from tests.unit.argv_check import check_argv

GOLDEN = Path(__file__).parent.parent / "golden" / "argv"
UUID = "6f1c2a50-0000-4000-8000-00000000c0de"
MAC = "52:54:00:00:00:01"


def vm(name: str, **fields) -> VmConfig:
    fields.setdefault("nics", [Nic(mac=MAC)])
    return VmConfig(name=name, uuid=UUID, **fields).validate()


CASES = {
    "bios-minimal": vm("minimal", memory_mib=512),
    "uefi-disks-cd": vm("Windows 11", os="win11", firmware="uefi", memory_mib=4096, cpus=4,
                        disks=[Disk("disk0.qcow2", "qcow2"), Disk("/data/old,disk.vmdk", "vmdk", bus="sata",
                                                                 created=False)],
                        cdrom=CdDrive(iso="/isos/Win11_23H2.iso"), boot_order=["cdrom", "disk"], tpm=True),
    "pc-ide-e1000-forwards": vm("legacy", machine="pc", disks=[Disk("disk0.img", "raw", bus="ide")],
                                cdrom=CdDrive(bus="ide"),
                                nics=[Nic(model="e1000", mac=MAC, forwards=[PortForward("tcp", 2222, 22),
                                                                            PortForward("udp", 5353, 53)])]),
    "kernel-boot-headless": vm("tiny", memory_mib=256, cdrom=None, kernel=KernelBoot(
        "/guest/vmlinuz", "/guest/initrd.gz", "console=ttyS0 quiet"), balloon=Balloon(enabled=False),
        display=Display(vnc=False, vga="none", tablet=False), nics=[]),
    "network-boot-two-nics": vm("pxe", boot_order=["network", "disk"], disks=[Disk("disk0.qcow2", "qcow2")],
                                nics=[Nic(mac=MAC), Nic(model="rtl8139", mac="52:54:00:00:00:02")],
                                balloon=Balloon(free_page_reporting=False, deflate_on_oom=False)),
}


# The tcp transport (Windows' default; HVDESK_TRANSPORT=tcp elsewhere): fixed ports for the golden files.
TCP_CASES = {"bios-minimal-tcp": "bios-minimal", "kernel-boot-headless-tcp": "kernel-boot-headless"}


def tcp_link(paths: VmPaths) -> Transport:
    return Transport("tcp", Endpoint(port=45001), Endpoint(port=45002), Endpoint(port=45003),
                     paths.run_dir / "vnc.pass")


def argv_for(config: VmConfig, tcp: bool = False) -> list[str]:
    host = HostSetup(Path("/usr/bin/qemu-system-x86_64"), "tcg", uefi_code=Path("/usr/share/OVMF/OVMF_CODE_4M.fd"))
    paths = VmPaths(vm_dir=Path("/home/u/.local/share/hvdesk/VMs") / config.name,
                    run_dir=Path("/run/user/1000/hvdesk/0f0f0f0f") / config.uuid)
    return build_argv(config, replace(host, transport=tcp_link(paths) if tcp else None), paths)


@pytest.mark.parametrize("case", sorted(CASES) + sorted(TCP_CASES))
def test_argv_matches_golden(case, regenerate):
    config = CASES[TCP_CASES.get(case, case)]
    text = "\n".join(argv_for(config, tcp=case in TCP_CASES)) + "\n"
    golden = GOLDEN / f"{case}.argv"
    if regenerate:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), f"no golden file {golden}: run with --regenerate-golden"
    assert text == golden.read_text()


def test_builder_is_pure():
    config = CASES["uefi-disks-cd"]
    assert argv_for(config) == argv_for(config)


def test_commas_in_paths_cannot_inject_options():
    config = vm("x", kernel=KernelBoot("/k"), cdrom=None)
    host = HostSetup(Path("/q"), "tcg")
    argv = build_argv(config, host, VmPaths(Path("/v,evil=1"), Path("/r,server=off")))
    assert "socket,id=qmp,path=/r,,server=off/qmp.sock,server=on,wait=off" in argv
    assert "file,id=serial0,path=/v,,evil=1/logs/serial.log" in argv


def test_hardware_accel_uses_host_cpu():
    argv = build_argv(CASES["bios-minimal"], HostSetup(Path("/q"), "kvm"), VmPaths(Path("/v"), Path("/r")))
    assert argv[argv.index("-accel") + 1] == "kvm" and argv[argv.index("-cpu") + 1] == "host"


def test_uefi_without_firmware_is_a_programming_error():
    with pytest.raises(ValueError, match="uefi_code"):
        build_argv(CASES["uefi-disks-cd"], HostSetup(Path("/q"), "tcg"), VmPaths(Path("/v"), Path("/r")))


# Commas, '=', spaces, quotes and non-ASCII: legal in paths, and each a way to break an option string.
ODD = "/home/u/my,vms=1 \"quoted\" it's ünï 💾"


def odd_paths(config: VmConfig) -> VmPaths:
    return VmPaths(vm_dir=Path(ODD) / "VMs" / config.name, run_dir=Path("/run/u=1,x 'y'") / config.uuid)


def test_odd_paths_keep_every_option_intact():
    config = vm("odd", firmware="uefi", tpm=True,
                disks=[Disk(f"{ODD}/a,b=c.qcow2", "qcow2", backing=[BackingImage(f"{ODD}/base,=.qcow2", "qcow2"),
                                                                   BackingImage("rel,=.img", "raw")]),
                       Disk("rel,x=1 'q'.img", "raw", bus="sata")],
                cdrom=CdDrive(iso=f"{ODD}/cd,,=.iso"), boot_order=["disk", "cdrom", "network"],
                kernel=KernelBoot(f"{ODD}/vmlinuz,=", f"{ODD}/initrd", "console=ttyS0 a=b,c"),
                nics=[Nic(mac=MAC, forwards=[PortForward("tcp", 2222, 22, "0.0.0.0")])])
    paths, uefi = odd_paths(config), f"{ODD}/OVMF,=.fd"
    argv = build_argv(config, HostSetup(Path("/q"), "tcg", uefi_code=Path(uefi)), paths)
    check_argv(config, paths, argv, uefi)


@pytest.mark.parametrize("tcp", [False, True], ids=["unix", "tcp"])
def test_every_golden_case_passes_the_option_check(tcp):
    for config in CASES.values():
        paths = odd_paths(config)
        link = tcp_link(paths) if tcp else None
        argv = build_argv(config, HostSetup(Path("/q"), "tcg", uefi_code=Path("/fw"), transport=link), paths)
        check_argv(config, paths, argv, "/fw", link)


def test_home_of_an_unknown_user_is_left_as_written():
    paths = VmPaths(Path("/v"), Path("/r"))
    assert paths.resolve("~no-such-user-here/d.qcow2") == Path("/v/~no-such-user-here/d.qcow2")
    assert paths.resolve("~root/d.qcow2") == Path("~root").expanduser() / "d.qcow2"


def test_a_qcow2_nvram_runs_as_qcow2_without_any_backing_image():
    config = CASES["uefi-disks-cd"]
    host = HostSetup(Path("/q"), "tcg", uefi_code=Path("/fw"), uefi_vars_format="qcow2")
    paths = odd_paths(config)
    argv = build_argv(config, host, paths)
    nodes = [json.loads(argv[i + 1]) for i, arg in enumerate(argv) if arg == "-blockdev"]
    assert {"driver": "qcow2", "file": "fw-vars-file", "node-name": "fw-vars", "backing": None} in nodes
    check_argv(config, paths, argv, "/fw")
    with pytest.raises(ValueError, match="NVRAM format"):
        build_argv(config, replace(host, uefi_vars_format="vvfat"), paths)
