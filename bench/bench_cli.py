"""The command line as a person runs it: one whole `hvdesk` process per command, 8 VMs in the library
(some running the tiny test guest under TCG, the rest stopped).

1. wall time and CPU time (the process and its children) of `hvdesk list`, `hvdesk list --json`,
   `hvdesk info` of a running and of a stopped VM, with `python -c pass` as the floor (and `import
   asyncio`, the engine's own floor); medians over rounds that run every command once, in an order
   that rotates;
2. the same for libvirt's `virsh list --all` / `virsh dominfo`, on 8 domains of its own, when virsh is
   installed and a libvirt daemon answers (otherwise it says why and measures hvdesk alone);
3. `--baseline DIR`: the same hvdesk commands from another source tree (an older commit, e.g. from
   `git archive main | tar -x -C DIR`), interleaved with this one: before and after in one run;
   `--installed VENV`: also the `hvdesk` command of a venv where hvdesk is installed from its wheel
   (as users have it: no editable-install finder on every start), e.g. .venv-noqt after
   `packaging/bootstrap.sh test`, with that interpreter's own `python -c pass` floor;
4. what `hvdesk list` still imports: `-X importtime` self times, medians, summed per package.

Each tree's bytecode is compiled first, as an installed package has it (PYTHONDONTWRITEBYTECODE
would otherwise make every run compile hvdesk from source).

    .venv/bin/python -m bench.bench_cli [--rounds 20] [--running 3] [--baseline DIR] [--installed VENV]
                                        [--no-virsh] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import datetime
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from bench.common import emit, private_library

ROOT = Path(__file__).resolve().parent.parent
VMS = 8
# What the `hvdesk` console script runs; with `-c` the working directory comes first on sys.path,
# so running it in a tree measures that tree's hvdesk.
ENTRY = "import sys; from hvdesk.launcher import main; sys.exit(main())"
HEAVY = ("numpy", "pycdlib", "Cryptodome", "qemu.qmp", "PySide6", "psutil", "ssl", "asyncio")
VIRSH_PREFIX = "hvdesk-bench-"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Command:
    """One command line to time, run in `cwd`."""

    def __init__(self, label: str, argv: list[str], cwd: Path = ROOT) -> None:
        self.label, self.argv, self.cwd = label, argv, cwd
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def run(self, keep: bool) -> None:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(self.argv, cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise RuntimeError(f"{self.label} failed ({done.returncode}): {done.stderr.decode(errors='replace')}")
        if keep:
            self.wall.append(wall)
            self.cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)

    def figures(self) -> dict:
        return {"wall_ms": statistics.median(self.wall) * 1e3, "wall_min_ms": min(self.wall) * 1e3,
                "cpu_ms": statistics.median(self.cpu) * 1e3, "n": len(self.wall)}


def hvdesk(label: str, *args: str, tree: Path = ROOT) -> Command:
    return Command(label, [sys.executable, "-c", ENTRY, *args], cwd=tree)


def measure(commands: list[Command], rounds: int, warmup: int = 2) -> None:
    """Every command once per round; the order rotates, so none always follows the same one."""
    for n in range(warmup + rounds):
        shift = n % len(commands)
        for command in commands[shift:] + commands[:shift]:
            command.run(keep=n >= warmup)


# -- the library ------------------------------------------------------------------------------

async def make_library(running: int) -> list[str]:
    from hvdesk.engine.library_ops import CreateRequest
    from hvdesk.engine.manager import Manager
    from tests.guest.build import ensure_tiny_guest
    from tests.integration.conftest import wait_for_serial

    guest = ensure_tiny_guest()
    names = [f"vm{n}" for n in range(VMS)]
    manager = await Manager().open()
    try:
        for name in names:
            await manager.create(CreateRequest(name, os="linux", memory_mib=256, disk_size=64 * 2**20,
                                               kernel=guest.kernel, initrd=guest.initrd, append=guest.append))
        for name in names[:running]:
            await manager.start(name)
        for name in names[:running]:  # booted guests idle; booting ones would eat the CPU being measured
            await wait_for_serial(manager.get(name).paths.serial_log, guest.marker, timeout=180)
    finally:
        await manager.close()
    return names


async def stop_all() -> None:
    from hvdesk.engine.manager import Manager
    from hvdesk.engine.states import VmState

    manager = await Manager().open()
    try:
        for machine in manager.machines():
            if machine.state not in (VmState.STOPPED, VmState.ABORTED, VmState.INACCESSIBLE):
                await manager.stop(machine.name, force=True, timeout=0)
    finally:
        await manager.close()


# -- libvirt ----------------------------------------------------------------------------------

class Libvirt:
    """8 domains of libvirt's own, the same tiny guest, `running` of them started; removed after."""

    def __init__(self, running: int) -> None:
        self.running = running
        self.virsh = shutil.which("virsh")
        self.names = [f"{VIRSH_PREFIX}{n}" for n in range(VMS)]
        self.files = Path(tempfile.mkdtemp(prefix="hvb-virt-"))
        self.defined = False  # domains of ours exist: remove them at the end
        self.started = 0
        self.note = ""

    def _virsh(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([self.virsh, "-q", *args], capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            raise RuntimeError(f"virsh {' '.join(args)}: {done.stderr.strip()}")
        return done

    def available(self) -> str | None:
        """None if virsh can be measured, else why not."""
        if self.virsh is None:
            return "virsh is not installed (libvirt-clients)"
        done = self._virsh("list", "--all", check=False)
        if done.returncode != 0:
            return f"no libvirt daemon answers virsh: {done.stderr.strip().splitlines()[-1:]}"
        return None

    def set_up(self) -> None:
        from tests.guest.build import ensure_tiny_guest

        guest = ensure_tiny_guest()
        self.files.chmod(0o755)  # libvirt's QEMU may run as its own user: it must read the guest
        kernel, initrd = self.files / "vmlinuz", self.files / "initrd"
        shutil.copyfile(guest.kernel, kernel)
        shutil.copyfile(guest.initrd, initrd)
        for path in (kernel, initrd):
            path.chmod(0o644)
        self.defined = True
        self.tear_down()  # a domain left by an interrupted run
        for name in self.names:
            xml = self.files / f"{name}.xml"
            xml.write_text(DOMAIN_XML.format(name=name, kernel=kernel, initrd=initrd, append=guest.append))
            self._virsh("define", str(xml))
        for name in self.names[:self.running]:
            done = self._virsh("start", name, check=False)
            if done.returncode != 0:
                self.note = f"virsh start failed, so fewer domains run: {done.stderr.strip()}"
                break
            self.started += 1

    def tear_down(self) -> None:
        for name in self.names:
            self._virsh("destroy", name, check=False)
            self._virsh("undefine", name, check=False)

    def commands(self) -> list[Command]:
        running = self.names[0] if self.started else None
        commands = [Command("virsh list --all", [self.virsh, "list", "--all"])]
        if running:
            commands.append(Command(f"virsh dominfo {running} (running)", [self.virsh, "dominfo", running]))
        stopped = self.names[-1]
        commands.append(Command(f"virsh dominfo {stopped} (stopped)", [self.virsh, "dominfo", stopped]))
        return commands

    def versions(self) -> str:
        done = subprocess.run([self.virsh, "version", "--daemon"], capture_output=True, text=True)
        found = dict(re.findall(r"(Running hypervisor|Running against daemon): (.+)", done.stdout))
        return f"libvirt {found.get('Running against daemon', '?')}, {found.get('Running hypervisor', '?')}"


DOMAIN_XML = """<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>{append}</cmdline>
  </os>
  <features><acpi/></features>
  <devices>
    <serial type='pty'/>
    <memballoon model='virtio'/>
  </devices>
</domain>
"""


# -- imports ----------------------------------------------------------------------------------

_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def import_breakdown(tree: Path, runs: int) -> dict:
    """`hvdesk list` under -X importtime: median self time per top-level package (hvdesk per
    subpackage), and the heavy modules it loads. importtime's own overhead inflates the sum."""
    per_package: dict[str, list[float]] = defaultdict(list)
    loaded: set[str] = set()
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-X", "importtime", "-c", ENTRY, "list"], cwd=tree,
                              capture_output=True, text=True, check=True)
        sums: dict[str, float] = defaultdict(float)
        for match in _IMPORT_LINE.finditer(done.stderr):
            module = match.group(4)
            loaded.add(module)
            parts = module.split(".")
            package = ".".join(parts[:2]) if parts[0] == "hvdesk" and len(parts) > 1 else parts[0]
            sums[package] += int(match.group(1)) / 1e3
        for package, ms in sums.items():
            per_package[package].append(ms)
    medians = {p: statistics.median(v + [0.0] * (runs - len(v))) for p, v in per_package.items()}
    ordered = dict(sorted(medians.items(), key=lambda item: -item[1]))
    heavy = [m for m in HEAVY if m in loaded]
    return {"self_ms_by_package": ordered, "total_ms": sum(ordered.values()), "heavy_loaded": heavy}


def compile_tree(tree: Path) -> None:
    compileall.compile_dir(str(tree / "hvdesk"), quiet=1)


# -- report -----------------------------------------------------------------------------------

def report(fig: dict, commands: list[Command]) -> list[str]:
    lines = [f"hvdesk CLI bench  {fig['date']}  Python {fig['python']}  {VMS} VMs ({fig['running']} running, "
             f"TCG)  {fig['rounds']} rounds, interleaved; medians"]
    floor = fig["commands"]["python -c pass"]["wall_ms"]
    lines.append(f"  {'command':44} {'wall ms':>8} {'min':>7} {'CPU ms':>8} {'over floor':>11}")
    for command in commands:
        f = fig["commands"][command.label]
        lines.append(f"  {command.label:44} {f['wall_ms']:8.1f} {f['wall_min_ms']:7.1f} {f['cpu_ms']:8.1f} "
                     f"{f['wall_ms'] - floor:+11.1f}")
    if fig.get("libvirt"):
        lines.append(f"  libvirt: {fig['libvirt']}")
    imports = fig["imports"]
    lines.append(f"`hvdesk list` imports, -X importtime self ms (median of {fig['import_runs']}; inflated by "
                 f"importtime itself), sum {imports['total_ms']:.0f}:")
    top = list(imports["self_ms_by_package"].items())[:18]
    lines.append("  " + ", ".join(f"{package} {ms:.1f}" for package, ms in top))
    lines.append("  heavy modules loaded: " + (", ".join(imports["heavy_loaded"]) or "none"))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--running", type=int, default=3, help="how many of the 8 VMs run")
    parser.add_argument("--baseline", type=Path, metavar="DIR", help="also time this hvdesk source tree")
    parser.add_argument("--installed", type=Path, metavar="VENV", help="also time the hvdesk installed in VENV")
    parser.add_argument("--no-virsh", action="store_true", help="do not measure libvirt even if present")
    parser.add_argument("--import-runs", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="JSON on stdout, text on stderr")
    args = parser.parse_args()

    fig: dict = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "python": sys.version.split()[0],
                 "rounds": args.rounds, "running": args.running, "import_runs": args.import_runs}
    trees = {"": ROOT} | ({"before: ": args.baseline.resolve()} if args.baseline else {})
    for tree in trees.values():
        compile_tree(tree)
    libvirt = None if args.no_virsh else Libvirt(args.running)
    commands = [Command("python -c pass", [sys.executable, "-c", "pass"]),
                # what any asyncio program pays before its first line of work (the engine is asyncio)
                Command("python -c 'import asyncio'", [sys.executable, "-c", "import asyncio"])]
    with private_library():
        try:
            say(f"creating {VMS} VMs, starting {args.running} and waiting for their guests to boot...")
            names = asyncio.run(make_library(args.running))
            running, stopped = names[0], names[-1]
            for prefix, tree in trees.items():
                commands += [hvdesk(f"{prefix}hvdesk list", "list", tree=tree),
                             hvdesk(f"{prefix}hvdesk list --json", "list", "--json", tree=tree)]
                if args.running:
                    commands.append(hvdesk(f"{prefix}hvdesk info {running} (running)", "info", running, tree=tree))
                commands.append(hvdesk(f"{prefix}hvdesk info {stopped} (stopped)", "info", stopped, tree=tree))
            if args.installed:
                venv = args.installed.resolve()
                python, command = str(venv / "bin" / "python"), str(venv / "bin" / "hvdesk")
                commands.append(Command("installed: python -c pass", [python, "-c", "pass"], cwd=Path("/")))
                commands += [Command(f"installed: hvdesk {' '.join(a)}", [command, *a], cwd=Path("/"))
                             for a in (["list"], ["list", "--json"], ["info", stopped],
                                       *([["info", running]] if args.running else []))]
            if libvirt is not None:
                why_not = libvirt.available()
                if why_not is None:
                    say(f"defining {VMS} libvirt domains, starting {args.running} (a stock libvirt may probe "
                        "QEMU for a minute or more first)...")
                    libvirt.set_up()
                    commands += libvirt.commands()
                    fig["libvirt"] = f"{libvirt.versions()}; {libvirt.started} of {VMS} domains running"
                    fig["libvirt"] += f"; {libvirt.note}" if libvirt.note else ""
                else:
                    fig["libvirt"] = f"not measured: {why_not}"
            say(f"timing {len(commands)} commands, {args.rounds} rounds...")
            measure(commands, args.rounds)
            fig["commands"] = {c.label: c.figures() for c in commands}
            say("import breakdown of `hvdesk list`...")
            fig["imports"] = import_breakdown(ROOT, args.import_runs)
        finally:
            if libvirt is not None:
                if libvirt.defined:
                    libvirt.tear_down()
                shutil.rmtree(libvirt.files, ignore_errors=True)
            asyncio.run(stop_all())
    emit(report(fig, commands), fig, args.json)


if __name__ == "__main__":
    main()
