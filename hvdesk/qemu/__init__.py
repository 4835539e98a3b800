"""Everything that talks to QEMU: binaries, accelerators, argv, processes, QMP and qemu-img."""
