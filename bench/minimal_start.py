"""The least a person would write to start a VM, as bench_engine's yardstick for `hvdesk start`:
spawn QEMU's argv (it daemonizes: the parent exits once the VM is set up), then over a blocking
QMP socket read the greeting, negotiate, send `cont` and wait for its reply.

    python bench/minimal_start.py ARGV_JSON QMP_SOCKET

Only the standard library and no hvdesk, so its own start-up is a bare interpreter's.
"""

import json
import socket
import subprocess
import sys


def main() -> None:
    argv, qmp_socket = json.loads(sys.argv[1]), sys.argv[2]
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(qmp_socket)
        replies = sock.makefile("rb")
        replies.readline()  # the greeting
        for command in (b'{"execute":"qmp_capabilities"}\n', b'{"execute":"cont"}\n'):
            sock.sendall(command)
            while "event" in json.loads(replies.readline()):  # an event may come before the reply
                pass


if __name__ == "__main__":
    main()
