"""gvkernel: a Jupyter-protocol kernel that runs code as GVThreads and inspects them live.

    gvkernel -f CONNECTION_FILE        # serve (as Jupyter starts kernels)
    gvkernel install --user            # write the "gvthread" kernelspec

The package lives in kernel/ and is installed as `gvkernel` (see pyproject.toml).
Importing it does not load the runtime: gvshell uses gvkernel.protocol and
gvkernel.tables without it.
"""
from gvkernel.protocol import GV_PROTOCOL_VERSION, PROTOCOL_VERSION

__version__ = "0.1.0"
__all__ = ["GV_PROTOCOL_VERSION", "PROTOCOL_VERSION", "__version__"]
