"""The probe firmware's layout, and each hand-assembled instruction against objdump's disassembly of its bytes
(objdump comes with binutils: packaging/bootstrap.sh installs it for the tests). That it really runs is
tests/integration/test_accel_probe.py's business."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hvdesk.qemu import probe_firmware as pf
from hvdesk.qemu.probe_firmware import BASE, Ref

OBJDUMP_MACHINE = {16: "i8086", 32: "i386", 64: "i386:x86-64"}


@pytest.fixture(scope="module")
def assembly() -> pf.Assembly:
    return pf.assemble()


def test_image_is_64_kib_with_the_reset_vector_jumping_to_the_start(assembly):
    image = pf.image()
    assert len(image) == 65536  # QEMU maps it at 4 GiB - 64 KiB (and its ISA alias below 1 MiB)
    assert assembly.labels["reset"] == 0xFFF0
    assert image[0xFFF0] == 0xE9  # jmp rel16, in real mode: IP wraps within the segment
    target = (0xFFF3 + int.from_bytes(image[0xFFF1:0xFFF3], "little")) % 0x10000
    assert target == assembly.labels["start16"] == 0
    assert image[0xFFF3:] == bytes([pf.FILLER]) * 13


def test_code_and_data_do_not_overlap_and_the_gdtr_points_at_the_gdt(assembly):
    image = pf.image()
    spans = sorted((item.offset, item.offset + item.size) for item in assembly.items)
    assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:]))
    gdtr = assembly.labels["gdtr"]
    assert int.from_bytes(image[gdtr:gdtr + 2], "little") == 4 * 8 - 1
    assert int.from_bytes(image[gdtr + 2:gdtr + 6], "little") == BASE + assembly.labels["gdt"]
    assert assembly.labels["gdt"] % 8 == 0


def test_only_the_end_of_the_checks_reports_success(assembly):
    says_ok = [item for item in assembly.items if item.text == f"mov al,{pf.EXIT_OK:#x}"]
    assert len(says_ok) == 1
    preceding = assembly.items[assembly.items.index(says_ok[0]) - 3:][:3]
    assert [item.text for item in preceding] == [f"movabs rdx,{pf.COMPUTE_EXPECTED:#x}", "cmp rax,rdx",
                                                 "jne wrong_result"]


def test_every_failure_has_its_own_exit_status():
    statuses = [pf.exit_status(value) for value in pf.FAILURES] + [0, pf.exit_status(pf.EXIT_OK)]
    assert len(set(statuses)) == len(statuses)
    assert pf.failure(pf.exit_status(pf.EXIT_MEMORY_MISMATCH)) == "memory did not hold what was written to it"
    assert pf.failure(0) == "it crashed (triple fault)"
    assert pf.failure(pf.exit_status(pf.EXIT_OK)) is None and pf.failure(1) is None


def test_the_expected_compute_result_is_what_xorshift_gives():
    assert pf.expected_result() == pf.COMPUTE_EXPECTED


def test_each_instruction_is_what_its_text_says(assembly, tmp_path: Path):
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.fail("objdump not found: install binutils (packaging/bootstrap.sh test does)")
    firmware = tmp_path / "probe.bin"
    firmware.write_bytes(pf.image())
    code = [item for item in assembly.items if item.bits]
    assert len(code) > 100
    for item in code:
        listing = subprocess.run(
            [objdump, "-D", "-b", "binary", "-m", OBJDUMP_MACHINE[item.bits], "-M", "intel", "--insn-width=16",
             f"--adjust-vma={BASE:#x}", f"--start-address={BASE + item.offset:#x}",
             f"--stop-address={BASE + item.offset + item.size:#x}", str(firmware)],
            capture_output=True, text=True, check=True).stdout
        decoded = [line.split("\t") for line in listing.splitlines() if re.match(r"\s*[0-9a-f]+:\t", line)]
        assert len(decoded) == 1, (item, listing)  # exactly one instruction in its bytes
        assert normalized(decoded[0][2]) == normalized(expected_text(item, assembly)), item


def expected_text(item: pf.Item, assembly: pf.Assembly) -> str:
    """The item's text with its labels as objdump prints them: segment offsets in real mode's lgdt,
    linear addresses everywhere else."""
    text = item.text
    for part in item.parts:
        if isinstance(part, Ref):
            offset = assembly.labels[part.label]
            text = re.sub(rf"\b{part.label}\b", f"{offset if part.kind == 'off16' else BASE + offset:#x}", text)
    return text


def normalized(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip())
