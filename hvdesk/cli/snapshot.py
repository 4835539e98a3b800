"""`hvdesk snapshot NAME take|list|restore|delete ...`, and getting a VM's disks ready for snapshots
(`convert-disk`, `exclude-disk`, `include-disk`)."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from hvdesk.core.snapshot_meta import Snapshot, SnapshotTree
from hvdesk.engine.manager import Manager


def add_parser(sub: Any) -> None:
    p = sub.add_parser("snapshot", help="take, list, restore and delete a VM's snapshots",
                       description="Snapshots of a VM: a running VM's hold its memory too (it runs on after a short "
                       "stop); a stopped VM's hold its disks. Restoring one restores the VM's settings too.")
    p.add_argument("name", help="the VM")
    actions = p.add_subparsers(dest="snapshot_action", metavar="ACTION", required=True)
    a = actions.add_parser("take", help="take a snapshot (live while the VM runs)")
    a.add_argument("snapshot", metavar="SNAP", help="its name (letters, digits, space, '.', '_', '-')")
    a.add_argument("--description", default="", metavar="TEXT")
    a = actions.add_parser("list", help="the VM's snapshots as a tree (* marks the current one)")
    a.add_argument("--json", action="store_true", help="machine-readable output")
    for verb, text in (("restore", "go back to a snapshot: its disks, memory (if taken running) and settings"),
                       ("delete", "delete a snapshot (its children stay restorable)")):
        actions.add_parser(verb, help=text).add_argument("snapshot", metavar="SNAP")
    for verb, text in (("convert-disk", "copy a raw (or other) disk into a qcow2 image that takes its place, so "
                                        "snapshots can hold it (the VM stopped)"),
                       ("exclude-disk", "leave a disk out of snapshots: restoring one leaves it as it is"),
                       ("include-disk", "keep a disk in snapshots again (the default)")):
        actions.add_parser(verb, help=text).add_argument(
            "disk", type=_index, metavar="N", help="the disk's number (0 is the first, as `info` lists them)")


def _index(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"disk number {text!r} is not a whole number")
    return int(text)


async def cmd_snapshot(manager: Manager, args: argparse.Namespace) -> int:
    snapshots = manager.snapshots
    action = args.snapshot_action
    if action == "list":
        return show_list(*snapshots.tree(args.name), args.json)
    if action == "take":
        done = await snapshots.take(args.name, args.snapshot, args.description)
        how = "with its memory (live)" if done.snapshot.ram else "of its disks (stopped)"
        _notices(done.notices)
        print(f"Took snapshot {done.snapshot.name!r} of {done.machine.name!r} {how} in {done.seconds:.2f} s")
    elif action == "restore":
        done = await snapshots.restore(args.name, args.snapshot)
        _notices(done.notices)
        print(f"Restored snapshot {done.snapshot.name!r} of {done.machine.name!r} in {done.seconds:.2f} s; "
              f"it is {done.machine.state}")
    elif action == "delete":
        done = await snapshots.delete(args.name, args.snapshot)
        _notices(done.notices)
        print(f"Deleted snapshot {done.snapshot.name!r} of {done.machine.name!r}")
    elif action == "convert-disk":
        machine, old, new, removed = await snapshots.convert_disk(args.name, args.disk)
        kept = "removed it" if removed else "kept it (hvdesk did not create it, or another VM uses it)"
        print(f"Converted disk {args.disk} of {machine.name!r} to qcow2: {new} replaces {old}; {kept}")
    else:
        keep = action == "include-disk"
        machine = await snapshots.keep_in_snapshots(args.name, args.disk, keep)
        print(f"Disk {args.disk} of {machine.name!r} is {'in' if keep else 'left out of'} its snapshots from now on")
    return 0


def _notices(notices: list[str]) -> None:
    for notice in notices:
        print(f"Note: {notice}")


def rows(tree: SnapshotTree) -> list[dict[str, Any]]:
    """`snapshot list --json`: one object per snapshot, oldest first."""
    names = {s.id: s.name for s in tree.snapshots}
    return [{"name": s.name, "parent": names.get(s.parent) if s.parent else None, "time": s.time,
             "state": s.state, "current": s.id == tree.current, "description": s.description}
            for s in tree.snapshots]


def show_list(machine: Any, tree: SnapshotTree, as_json: bool) -> int:
    if as_json:
        print(json.dumps(rows(tree), indent=2))
        return 0
    if not tree.snapshots:
        print(f"{machine.name!r} has no snapshots. Take one with: hvdesk snapshot NAME take SNAP")
        return 0
    print(f"Snapshots of {machine.name!r} (* the current one; running: with its memory):")
    for depth, snap in _walk(tree):
        mark = "*" if snap.id == tree.current else " "
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snap.time))
        text = f"  — {' '.join(snap.description.split())}" if snap.description else ""
        print(f"{mark} {'  ' * depth}{snap.name}  ({snap.state}, {when}){text}")
    return 0


def _walk(tree: SnapshotTree) -> list[tuple[int, Snapshot]]:
    """Depth-first, children in the order they were taken."""
    out: list[tuple[int, Snapshot]] = []
    stack = [(0, s) for s in reversed([s for s in tree.snapshots if s.parent is None])]
    while stack:
        depth, snap = stack.pop()
        out.append((depth, snap))
        stack.extend((depth + 1, child) for child in reversed(tree.children(snap.id)))
    return out
