"""The main window's actions: each one's text, icon, shortcut and tip, and which engine actions it
offers (the engine's table of states says when those are available)."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtGui import QKeySequence

from hvdesk.engine.actions import Action


@dataclass(frozen=True)
class ActionSpec:
    """One user action: how it looks, and which engine actions it offers (the engine's table of
    states says when they are available)."""

    key: str
    text: str
    icon: str
    shortcut: str | QKeySequence.StandardKey | None
    actions: tuple[Action, ...]  # available when any of them is; empty: needs no selected VM
    tip: str


ACTIONS = (
    ActionSpec("new", "&New…", "new", QKeySequence.StandardKey.New, (), "Create a new virtual machine"),
    ActionSpec("settings", "&Settings…", "settings", "Ctrl+S", (Action.EDIT,), "Change the selected VM's settings"),
    ActionSpec("start", "S&tart", "start", "Ctrl+T", (Action.START,), "Start the selected VM"),
    ActionSpec("show", "S&how", "show", "Ctrl+O", (Action.SHOW,), "Open the VM's screen in a console window"),
    ActionSpec("pause", "&Pause", "pause", "Ctrl+P", (Action.PAUSE, Action.RESUME), "Pause or resume the selected VM"),
    ActionSpec("shutdown", "ACPI &Shutdown", "shutdown", "Ctrl+H", (Action.SHUTDOWN,),
               "Press the VM's power button: the guest shuts down by itself"),
    ActionSpec("poweroff", "Power &Off", "poweroff", "Ctrl+Shift+F", (Action.STOP,),
               "Turn the VM off at once, like pulling the plug"),
    ActionSpec("reset", "&Reset", "reset", "Ctrl+R", (Action.RESET,), "Hard-reset the VM"),
    ActionSpec("save", "Sa&ve State", "save", "Ctrl+Shift+S", (Action.SAVE,),
               "Write the VM's memory to its folder and stop it; Start resumes it where it was"),
    ActionSpec("clone", "&Clone…", "clone", "Ctrl+Shift+C", (Action.CLONE,),
               "Make a new VM from the selected one (a full copy or a linked clone)"),
    ActionSpec("delete", "&Delete…", "delete", QKeySequence.StandardKey.Delete, (Action.DELETE,),
               "Delete the selected VM"),
    ActionSpec("log", "Show &Log…", "log", "Ctrl+L", (Action.SHOW_LOG,),
               "Show the QEMU and serial logs of the selected VM"),
    ActionSpec("overview", "Host &Overview…", "overview", "Ctrl+G", (),
               "All running VMs' CPU and memory against the host's"),
    ActionSpec("preferences", "&Preferences…", "settings", "Ctrl+,", (),
               "The allocation controller: whether it acts, its memory budget, default pinning"),
)
