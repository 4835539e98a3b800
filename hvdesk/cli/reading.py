"""The commands that only read: `list` and `info`. They run without an event loop, on the engine's
quick read path (engine/glance.py), so that their whole process takes about as long as `virsh
list`; tests/integration/test_cli_imports.py keeps asyncio, qemu.qmp and every heavy module out."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import NamedTuple

from hvdesk.core.units import format_approx, format_size
from hvdesk.engine import describe
from hvdesk.engine.glance import Glance

MIB = 1024 * 1024


class Request(NamedTuple):
    command: str  # list or info
    name: str | None  # info's VM
    json: bool


def plain_request(words: list[str]) -> Request | None:
    """`list [--json]` and `info NAME [--json]` as people type them, recognised without argparse;
    None for anything else (help, a typo, a name that looks like an option), which cli/parser.py
    parses and explains. The grammar there is the reference: tests/unit/test_cli_plain.py compares."""
    as_json = "--json" in words
    rest = [w for w in words if w != "--json"]
    if len(words) - len(rest) > 1 or not rest or rest[0] != words[0]:  # --json comes after the command
        return None
    if rest == ["list"]:
        return Request("list", None, as_json)
    if len(rest) == 2 and rest[0] == "info" and rest[1] and not rest[1].startswith("-"):
        return Request("info", rest[1], as_json)
    return None


def run(args: Request) -> int:
    return HANDLERS[args.command](args)


def cmd_list(args: Request) -> int:
    rows = [describe.summary(m) for m in Glance().open(inspect=True).machines()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("No VMs yet. Create one with: hvdesk create NAME")
        return 0
    table = [("NAME", "STATE", "OS", "MEMORY", "CPUS")]
    for row in rows:
        state = row["state"] + (f" ({row['reason']})" if row["reason"] else "")
        memory = format_size(row["memory_mib"] * MIB) if row["memory_mib"] else "-"
        table.append((row["name"], state, row["os"] or "-", memory, str(row["cpus"] or "-")))
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    for r in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)) + "  " + r[4])
    return 0


def cmd_info(args: Request) -> int:
    assert args.name is not None
    data = describe.details_now(Glance().open(inspect=False).get(args.name))
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(_format_info(data))
    return 0


def _format_info(data: describe.Report) -> str:
    lines = [f"Name:        {data['name']}", f"State:       {data['state']}"
             + (f" ({data['reason']})" if data["reason"] else "")]
    if data.get("uuid") is None:
        return "\n".join(lines + [f"Folder:      {data['folder']}"])
    acc = data["accelerator"]
    lines += [
        f"UUID:        {data['uuid']}",
        f"PID:         {data['pid'] or '-'}",
        f"OS:          {data['os']}",
        f"Accelerator: {acc['name'].upper() + ' - ' + acc['reason'] if acc else 'unknown (QEMU missing?)'}"
        + ("" if not acc or acc["in_use"] else " (at next start)"),
        f"Memory:      {format_size(data['memory_mib'] * MIB)}",
        f"CPUs:        {data['cpus']}",
        f"Firmware:    {data['firmware']} ({data['machine']})",
        f"Boot order:  {', '.join(data['boot_order'])}",
    ]
    for disk in data["disks"]:
        size = (f"{format_size(disk['virtual_size'])}, {format_approx(disk['actual_size'])} used"
                if disk["virtual_size"] is not None else disk["error"])
        kept = "" if disk["in_snapshots"] else ", not in snapshots"
        lines.append(f"Disk:        {disk['path']} ({disk['format']}, {disk['bus']}, {size}{kept})")
        lines += [f"  backed by  {b['path']} ({b['format']})" for b in disk["backing"]]
    if data["cdrom"] is not None:
        lines.append(f"CD:          {data['cdrom']['iso'] or 'empty'}")
    for nic in data["nics"]:
        fwd = ", ".join(f"{f['protocol']} {f['host_address']}:{f['host_port']}->{f['guest_port']}"
                        for f in nic["forwards"])
        lines.append(f"Network:     {nic['mode']} ({nic['model']}, {nic['mac']}){'; ' + fwd if fwd else ''}")
    on = {True: "on", False: "off"}
    balloon, display, res = data["balloon"], data["display"], data["resources"]
    lines += [
        f"Balloon:     {on[balloon['enabled']]}" + (f" (free page reporting {on[balloon['free_page_reporting']]}, "
                                                    f"deflate on OOM {on[balloon['deflate_on_oom']]})"
                                                    if balloon["enabled"] else ""),
        f"Display:     {display['vga']}, console {on[display['vnc']]}, tablet {on[display['tablet']]}",
        f"Resources:   auto-balloon {on[res['auto_balloon']]}, min {res['min_memory_mib']} MiB, "
        f"shares {res['shares']}, pin {res['pin']}",
        f"TPM:         {on[data['tpm']]}",
    ]
    if data["kernel"]:
        lines.append(f"Kernel:      {data['kernel']['kernel']} {data['kernel']['append']}".rstrip())
    lines += [f"QMP socket:  {data['sockets']['qmp']}", f"VNC socket:  {data['sockets']['vnc'] or '-'}",
              f"Log:         {data['log']}", f"Serial log:  {data['serial_log']}", f"Folder:      {data['folder']}"]
    saved = data.get("saved_state")
    if saved and isinstance(saved.get("size"), int) and isinstance(saved.get("saved_at"), (int, float)):
        import time

        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(saved["saved_at"]))
        lines.append(f"Saved state: {saved['file']} ({format_approx(saved['size'])}, saved {when}"
                     + (", resumes paused" if saved.get("paused") else "") + "; `hvdesk start` resumes it)")
    if data["notes"]:
        lines.append(f"Notes:       {data['notes']}")
    return "\n".join(lines)


HANDLERS: dict[str, Callable[[Request], int]] = {"list": cmd_list, "info": cmd_info}
