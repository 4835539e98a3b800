"""The accelerator probe's firmware: 64 KiB that start the way an OS does, then make QEMU exit.

From the reset vector (real mode) it loads a GDT and enters protected mode, asks CPUID for long mode, builds
PAE page tables (2 MiB pages, as the Linux decompressor does), sets EFER.LME with WRMSR, turns on paging and
jumps to 64-bit code. There it checks EFER.LMA and writes a mark to port 0xe9 (the host times what follows),
fills 32 MiB of fresh memory page by page, reads it back, copies it about with rep movsq, sums it and runs a
bounded compute loop, checking each result. Only then does it write EXIT_OK to isa-debug-exit (port 0xf4):
QEMU exits with status (value << 1) | 1. A failed check writes another value; a fault escalates to a triple
fault, which QEMU (run with -no-reboot) turns into exit status 0; anything else ends in `hlt` and the
caller's timeout. No path but the last one writes EXIT_OK.

The code is hand-assembled: each instruction is its bytes next to the Intel syntax `objdump -M intel`
prints for them (tests/unit/test_probe_firmware.py disassembles every one and compares).
"""

from __future__ import annotations

from dataclasses import dataclass, field

BASE = 0xFFFF_0000  # the image sits just below 4 GiB; after reset CS's base is this and IP is 0xfff0
IMAGE_SIZE = 0x1_0000
RESET_VECTOR = 0xFFF0  # offset of the reset vector in the image
FILLER = 0xF4  # hlt: a stray jump stops (and times out) instead of running into something else

PML4, PDPT, PD_LOW, PD_HIGH = 0x1000, 0x2000, 0x3000, 0x4000  # page tables in low RAM
PAGE_TABLES_END = 0x5000
TOUCH_START = 16 << 20  # fresh memory the guest fills, copies and reads: [16 MiB, 48 MiB)
TOUCH_SIZE = 32 << 20
TOUCH_PAGES = TOUCH_SIZE // 4096
MEMORY_MIB = 64  # the guest's RAM (-m)
COMPUTE_SEED = 0x2545_F491_4F6C_DD1D
COMPUTE_ROUNDS = 1_000_000  # xorshift64 rounds
COMPUTE_EXPECTED = 0x90EA_952B_45A8_7307  # what they leave (expected_result() computes it, in ~0.5 s)

EXIT_PORT = 0xF4  # isa-debug-exit,iobase=0xf4,iosize=1
MARK_PORT = 0xE9  # isa-debugcon's usual port (-debugcon): one byte there says "now in long mode"
LONG_MODE_MARK = ord("L")
EXIT_OK = 0x2A
EXIT_NO_LONG_MODE = 0x11  # CPUID says the CPU has no long mode
EXIT_NOT_IN_LONG_MODE = 0x12  # EFER.LMA is clear after paging was turned on
EXIT_MEMORY_MISMATCH = 0x13  # memory did not hold what was written to it
EXIT_WRONG_RESULT = 0x14  # the compute loop's result is not the expected one

FAILURES = {
    EXIT_NO_LONG_MODE: "its CPU has no long mode",
    EXIT_NOT_IN_LONG_MODE: "long mode did not engage",
    EXIT_MEMORY_MISMATCH: "memory did not hold what was written to it",
    EXIT_WRONG_RESULT: "a computation gave a wrong result",
}

CODE32, DATA, CODE64 = 0x08, 0x10, 0x18  # GDT selectors


def exit_status(value: int) -> int:
    """The exit status of QEMU after the guest wrote `value` to isa-debug-exit."""
    return (value << 1) | 1


def failure(status: int) -> str | None:
    """Why the test guest failed, from QEMU's exit status; None if the guest cannot have caused it."""
    if status == 0:
        return "it crashed (triple fault)"
    return next((why for value, why in FAILURES.items() if status == exit_status(value)), None)


def expected_result(seed: int = COMPUTE_SEED, rounds: int = COMPUTE_ROUNDS) -> int:
    """What the compute loop leaves in rax: xorshift64 (13, 7, 17) applied `rounds` times."""
    mask = (1 << 64) - 1
    x = seed
    for _ in range(rounds):
        x ^= (x << 13) & mask
        x ^= x >> 7
        x ^= (x << 17) & mask
    return x


def expected_sum() -> int:
    """The sum of all qwords at the end: in each half, every page holds its lower-half page's address."""
    lower_pages = sum(TOUCH_START + 4096 * page for page in range(TOUCH_PAGES // 2))
    return (2 * 512 * lower_pages) % (1 << 64)


# --- a very small assembler: the bytes are written by hand, it only places them and fills in labels ---

@dataclass(frozen=True)
class Ref:
    """A label's address, encoded as `kind`: rel8/rel16/rel32 (from the instruction's end), abs32, off16."""
    label: str
    kind: str

    @property
    def size(self) -> int:
        return {"rel8": 1, "rel16": 2, "off16": 2, "rel32": 4, "abs32": 4}[self.kind]


def rel8(label: str) -> Ref:
    return Ref(label, "rel8")


def rel16(label: str) -> Ref:
    return Ref(label, "rel16")


def rel32(label: str) -> Ref:
    return Ref(label, "rel32")


def abs32(label: str) -> Ref:
    return Ref(label, "abs32")


def off16(label: str) -> Ref:
    return Ref(label, "off16")


def u8(value: int) -> bytes:
    return value.to_bytes(1, "little")


def u16(value: int) -> bytes:
    return value.to_bytes(2, "little")


def u32(value: int) -> bytes:
    return value.to_bytes(4, "little")


def u64(value: int) -> bytes:
    return value.to_bytes(8, "little")


@dataclass(frozen=True)
class Item:
    offset: int  # in the image
    bits: int  # 16, 32 or 64 for code; 0 for data
    text: str  # code: Intel syntax, labels by name; data: what it is
    parts: tuple[bytes | Ref, ...]

    @property
    def size(self) -> int:
        return sum(len(p) if isinstance(p, bytes) else p.size for p in self.parts)


@dataclass
class Assembly:
    """Items placed one after another from `offset` (settable, to place the reset vector), in `bits` mode."""
    items: list[Item] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)  # name -> offset in the image
    offset: int = 0
    bits: int = 16

    def label(self, name: str) -> None:
        assert name not in self.labels, name
        self.labels[name] = self.offset

    def op(self, text: str, *parts: bytes | Ref) -> None:
        self._add(Item(self.offset, self.bits, text, parts))

    def data(self, text: str, *parts: bytes | Ref) -> None:
        self._add(Item(self.offset, 0, text, parts))

    def align(self, boundary: int) -> None:
        self.offset += -self.offset % boundary

    def _add(self, item: Item) -> None:
        self.items.append(item)
        self.offset += item.size

    def image(self) -> bytes:
        out = bytearray([FILLER]) * IMAGE_SIZE
        for item in self.items:
            encoded = b"".join(self._encode(part, item) for part in item.parts)
            assert len(encoded) == item.size and item.offset + item.size <= IMAGE_SIZE, item
            assert bytes(out[item.offset:item.offset + item.size]) == bytes([FILLER]) * item.size, item
            out[item.offset:item.offset + item.size] = encoded
        return bytes(out)

    def _encode(self, part: bytes | Ref, item: Item) -> bytes:
        if isinstance(part, bytes):
            return part
        target = self.labels[part.label]
        if part.kind == "abs32":
            return u32(BASE + target)
        if part.kind == "off16":
            return u16(target)  # real mode: CS's base is BASE, so an image offset is a segment offset
        distance = target - (item.offset + item.size)
        if part.kind == "rel16":
            return u16(distance % 0x1_0000)  # real mode: IP wraps around within the 64 KiB segment
        return distance.to_bytes(part.size, "little", signed=True)


def assemble() -> Assembly:
    """The probe's code and data, placed and labelled (image() gives the bytes)."""
    a = Assembly()

    # Real mode, from the reset vector (a jump at the end of the image). DS's base is 0 here, CS's is BASE.
    a.bits = 16
    a.label("start16")
    a.op("cli", b"\xfa")
    a.op("cld", b"\xfc")
    a.op("lgdtd cs:gdtr", b"\x2e\x66\x0f\x01\x16", off16("gdtr"))  # 32-bit base: the GDT is at 4 GiB - 64 KiB
    a.op("mov eax,cr0", b"\x0f\x20\xc0")
    a.op("or eax,0x1", b"\x66\x83\xc8\x01")  # CR0.PE
    a.op("mov cr0,eax", b"\x0f\x22\xc0")
    a.op("jmp 0x8:start32", b"\x66\xea", abs32("start32"), u16(CODE32))

    # Protected mode, flat segments.
    a.bits = 32
    a.label("start32")
    a.op("mov ax,0x10", b"\x66\xb8", u16(DATA))
    a.op("mov ds,eax", b"\x8e\xd8")
    a.op("mov es,eax", b"\x8e\xc0")
    a.op("mov ss,eax", b"\x8e\xd0")
    # CPUID: is there an extended leaf 0x80000001, and does it say long mode (EDX bit 29)?
    a.op("mov eax,0x80000000", b"\xb8", u32(0x8000_0000))
    a.op("cpuid", b"\x0f\xa2")
    a.op("cmp eax,0x80000001", b"\x3d", u32(0x8000_0001))
    a.op("jb no_long_mode", b"\x0f\x82", rel32("no_long_mode"))
    a.op("mov eax,0x80000001", b"\xb8", u32(0x8000_0001))
    a.op("cpuid", b"\x0f\xa2")
    a.op("bt edx,0x1d", b"\x0f\xba\xe2\x1d")
    a.op("jae no_long_mode", b"\x0f\x83", rel32("no_long_mode"))
    # Page tables: clear them, then PML4[0] -> PDPT; PDPT[0] -> PD_LOW (0-1 GiB), PDPT[3] -> PD_HIGH (3-4 GiB).
    a.op(f"mov edi,{PML4:#x}", b"\xbf", u32(PML4))
    a.op(f"mov ecx,{(PAGE_TABLES_END - PML4) // 4:#x}", b"\xb9", u32((PAGE_TABLES_END - PML4) // 4))
    a.op("xor eax,eax", b"\x31\xc0")
    a.op("rep stos DWORD PTR es:[edi],eax", b"\xf3\xab")
    a.op(f"mov DWORD PTR ds:{PML4:#x},{PDPT | 3:#x}", b"\xc7\x05", u32(PML4), u32(PDPT | 3))  # present, writable
    a.op(f"mov DWORD PTR ds:{PDPT:#x},{PD_LOW | 3:#x}", b"\xc7\x05", u32(PDPT), u32(PD_LOW | 3))
    a.op(f"mov DWORD PTR ds:{PDPT + 3 * 8:#x},{PD_HIGH | 3:#x}", b"\xc7\x05", u32(PDPT + 3 * 8), u32(PD_HIGH | 3))
    # PD_LOW: 512 identity-mapped 2 MiB pages (present, writable, PS) for the RAM we use
    a.op(f"mov edi,{PD_LOW:#x}", b"\xbf", u32(PD_LOW))
    a.op("mov eax,0x83", b"\xb8", u32(0x83))
    a.op("mov ecx,0x200", b"\xb9", u32(512))
    a.label("map_low")
    a.op("mov DWORD PTR [edi],eax", b"\x89\x07")
    a.op("add eax,0x200000", b"\x05", u32(0x20_0000))
    a.op("add edi,0x8", b"\x83\xc7\x08")
    a.op("dec ecx", b"\x49")
    a.op("jne map_low", b"\x75", rel8("map_low"))
    # PD_HIGH: its last entry maps the 2 MiB that hold this code, so it keeps running once paging is on
    a.op(f"mov DWORD PTR ds:{PD_HIGH + 511 * 8:#x},0xffe00083", b"\xc7\x05", u32(PD_HIGH + 511 * 8),
         u32(0xFFE0_0083))
    # CR3, CR4.PAE, EFER.LME (the MSR write a nested hypervisor must get right), then CR0.PG: long mode
    a.op(f"mov eax,{PML4:#x}", b"\xb8", u32(PML4))
    a.op("mov cr3,eax", b"\x0f\x22\xd8")
    a.op("mov eax,cr4", b"\x0f\x20\xe0")
    a.op("or eax,0x20", b"\x83\xc8\x20")
    a.op("mov cr4,eax", b"\x0f\x22\xe0")
    a.op("mov ecx,0xc0000080", b"\xb9", u32(0xC000_0080))  # IA32_EFER
    a.op("rdmsr", b"\x0f\x32")
    a.op("or eax,0x100", b"\x0d", u32(0x100))
    a.op("wrmsr", b"\x0f\x30")
    a.op("mov eax,cr0", b"\x0f\x20\xc0")
    a.op("or eax,0x80000000", b"\x0d", u32(0x8000_0000))
    a.op("mov cr0,eax", b"\x0f\x22\xc0")
    a.op("jmp 0x18:start64", b"\xea", abs32("start64"), u16(CODE64))

    # Long mode. Its first check decodes the same in 32-bit code, so it also catches a CPU that ignored LME.
    a.bits = 64
    a.label("start64")
    a.op("mov ecx,0xc0000080", b"\xb9", u32(0xC000_0080))
    a.op("rdmsr", b"\x0f\x32")
    a.op("bt eax,0xa", b"\x0f\xba\xe0\x0a")  # EFER.LMA
    a.op("jae not_in_long_mode", b"\x0f\x83", rel32("not_in_long_mode"))
    # Tell the host that the timed part begins (it measures from here, so QEMU's start-up does not count).
    a.op(f"mov al,{LONG_MODE_MARK:#x}", b"\xb0", u8(LONG_MODE_MARK))
    a.op(f"out {MARK_PORT:#x},al", b"\xe6", u8(MARK_PORT))
    # Fresh memory, page by page: fill each 4 KiB page with its own address (rep stosq, as an OS clears pages).
    a.op(f"mov edi,{TOUCH_START:#x}", b"\xbf", u32(TOUCH_START))
    a.op(f"mov edx,{TOUCH_PAGES:#x}", b"\xba", u32(TOUCH_PAGES))
    a.label("fill_page")
    a.op("mov rax,rdi", b"\x48\x89\xf8")
    a.op("mov ecx,0x200", b"\xb9", u32(512))
    a.op("rep stos QWORD PTR es:[rdi],rax", b"\xf3\x48\xab")  # leaves rdi at the next page
    a.op("dec edx", b"\xff\xca")
    a.op("jne fill_page", b"\x75", rel8("fill_page"))
    # Read each page's first and last qword back.
    a.op(f"mov edi,{TOUCH_START:#x}", b"\xbf", u32(TOUCH_START))
    a.op(f"mov edx,{TOUCH_PAGES:#x}", b"\xba", u32(TOUCH_PAGES))
    a.label("check_page")
    a.op("cmp QWORD PTR [rdi],rdi", b"\x48\x39\x3f")
    a.op("jne memory_mismatch", b"\x0f\x85", rel32("memory_mismatch"))
    a.op("cmp QWORD PTR [rdi+0xff8],rdi", b"\x48\x39\xbf", u32(0xFF8))
    a.op("jne memory_mismatch", b"\x0f\x85", rel32("memory_mismatch"))
    a.op("add rdi,0x1000", b"\x48\x81\xc7", u32(0x1000))
    a.op("dec edx", b"\xff\xca")
    a.op("jne check_page", b"\x75", rel8("check_page"))
    # The bulk of the work, and what sets TCG apart from hardware (~0.15 s against milliseconds): copy the
    # lower half over the upper half and back with rep movsq, as a kernel moves itself about.
    upper, half_qwords = TOUCH_START + TOUCH_SIZE // 2, TOUCH_SIZE // 2 // 8
    a.op(f"mov esi,{TOUCH_START:#x}", b"\xbe", u32(TOUCH_START))
    a.op(f"mov edi,{upper:#x}", b"\xbf", u32(upper))
    a.op(f"mov ecx,{half_qwords:#x}", b"\xb9", u32(half_qwords))
    a.op("rep movs QWORD PTR es:[rdi],QWORD PTR ds:[rsi]", b"\xf3\x48\xa5")
    a.op(f"mov esi,{upper:#x}", b"\xbe", u32(upper))
    a.op(f"mov edi,{TOUCH_START:#x}", b"\xbf", u32(TOUCH_START))
    a.op(f"mov ecx,{half_qwords:#x}", b"\xb9", u32(half_qwords))
    a.op("rep movs QWORD PTR es:[rdi],QWORD PTR ds:[rsi]", b"\xf3\x48\xa5")
    # Sum every qword: both halves now hold the lower half's page addresses.
    a.op("xor eax,eax", b"\x31\xc0")
    a.op(f"mov edi,{TOUCH_START:#x}", b"\xbf", u32(TOUCH_START))
    a.op(f"mov ecx,{TOUCH_SIZE // 8:#x}", b"\xb9", u32(TOUCH_SIZE // 8))
    a.label("sum_qword")
    a.op("add rax,QWORD PTR [rdi]", b"\x48\x03\x07")
    a.op("add rdi,0x8", b"\x48\x83\xc7\x08")
    a.op("dec ecx", b"\xff\xc9")
    a.op("jne sum_qword", b"\x75", rel8("sum_qword"))
    a.op(f"movabs rdx,{expected_sum():#x}", b"\x48\xba", u64(expected_sum()))
    a.op("cmp rax,rdx", b"\x48\x39\xd0")
    a.op("jne memory_mismatch", b"\x0f\x85", rel32("memory_mismatch"))
    # A bounded computation with a known result: xorshift64 (13, 7, 17), COMPUTE_ROUNDS times.
    a.op(f"movabs rax,{COMPUTE_SEED:#x}", b"\x48\xb8", u64(COMPUTE_SEED))
    a.op(f"mov ecx,{COMPUTE_ROUNDS:#x}", b"\xb9", u32(COMPUTE_ROUNDS))
    a.label("compute")
    a.op("mov rdx,rax", b"\x48\x89\xc2")
    a.op("shl rdx,0xd", b"\x48\xc1\xe2\x0d")
    a.op("xor rax,rdx", b"\x48\x31\xd0")
    a.op("mov rdx,rax", b"\x48\x89\xc2")
    a.op("shr rdx,0x7", b"\x48\xc1\xea\x07")
    a.op("xor rax,rdx", b"\x48\x31\xd0")
    a.op("mov rdx,rax", b"\x48\x89\xc2")
    a.op("shl rdx,0x11", b"\x48\xc1\xe2\x11")
    a.op("xor rax,rdx", b"\x48\x31\xd0")
    a.op("dec ecx", b"\xff\xc9")
    a.op("jne compute", b"\x75", rel8("compute"))
    a.op(f"movabs rdx,{COMPUTE_EXPECTED:#x}", b"\x48\xba", u64(COMPUTE_EXPECTED))
    a.op("cmp rax,rdx", b"\x48\x39\xd0")
    a.op("jne wrong_result", b"\x0f\x85", rel32("wrong_result"))
    a.op(f"mov al,{EXIT_OK:#x}", b"\xb0", u8(EXIT_OK))
    a.op(f"out {EXIT_PORT:#x},al", b"\xe6", u8(EXIT_PORT))  # QEMU exits here; should it not, stop
    a.label("halt")
    a.op("cli", b"\xfa")
    a.op("hlt", b"\xf4")
    a.op("jmp halt", b"\xeb", rel8("halt"))

    # Failures: the same bytes mean the same in 32- and 64-bit code, so either may jump here.
    for name, value in [("no_long_mode", EXIT_NO_LONG_MODE), ("not_in_long_mode", EXIT_NOT_IN_LONG_MODE),
                        ("memory_mismatch", EXIT_MEMORY_MISMATCH), ("wrong_result", EXIT_WRONG_RESULT)]:
        a.label(name)
        a.op(f"mov al,{value:#x}", b"\xb0", u8(value))
        a.op(f"out {EXIT_PORT:#x},al", b"\xe6", u8(EXIT_PORT))
        a.op("jmp halt", b"\xeb", rel8("halt"))

    # GDT: flat 32-bit code, data, 64-bit code; accessed bits preset, so the CPU never writes to this ROM.
    a.align(8)
    a.label("gdt")
    a.data("null descriptor", u64(0))
    a.data("0x08: code, 32-bit, base 0, limit 4 GiB", u64(0x00CF_9B00_0000_FFFF))
    a.data("0x10: data, base 0, limit 4 GiB", u64(0x00CF_9300_0000_FFFF))
    a.data("0x18: code, 64-bit", u64(0x00AF_9B00_0000_FFFF))
    a.label("gdtr")
    a.data("GDTR: limit, 32-bit base", u16(4 * 8 - 1), abs32("gdt"))

    # The reset vector, in real mode at CS base BASE, IP 0xfff0.
    a.offset, a.bits = RESET_VECTOR, 16
    a.label("reset")
    a.op("jmp start16", b"\xe9", rel16("start16"))
    return a


def image() -> bytes:
    """The firmware, ready for QEMU's -bios."""
    return assemble().image()
