"""hvdesk: a desktop manager for QEMU virtual machines."""

import os as _os

__version__ = "0.1.0"
APP_NAME = "hvdesk"
DESKTOP_ID = "io.github.hvdesk"  # the desktop file and AppStream id (resources/desktop/), reverse-DNS

# numpy (the monitor's ring buffers, pyqtgraph) does element-wise work on a few thousand numbers,
# where BLAS threads only cost: OpenBLAS starts one per core at import and they burn CPU in every
# process that loads it. It reads these when numpy is first imported, so they are set here, before
# any hvdesk module can import numpy; a value the user set is left alone.
if not any(_os.environ.get(name) for name in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")):
    _os.environ["OPENBLAS_NUM_THREADS"] = _os.environ["MKL_NUM_THREADS"] = "1"
