"""gvshell: an IPython-style terminal client for gvkernel.

    gvshell                      # start a local gvkernel, attach, shut it down on exit
    gvshell --existing [FILE]    # attach to a running kernel (newest in the runtime dir)
    gvshell -f FILE [--ip IP]    # attach to a kernel from its connection file (remote)

Layering: gvshell talks to the kernel only over the Jupyter protocol (ZeroMQ). It imports
gvkernel.protocol, gvkernel.tables and gvkernel.connection, which do not load the runtime;
it never imports gvthread or gvkernel.kernel.
"""
from gvkernel.protocol import GV_PROTOCOL_VERSION, PROTOCOL_VERSION

__version__ = "0.1.0"
__all__ = ["GV_PROTOCOL_VERSION", "PROTOCOL_VERSION", "__version__", "load_ipython_extension",
           "unload_ipython_extension"]


def load_ipython_extension(ip) -> None:
    """`%load_ext gvshell`: the gv magics in any IPython (gvshell.extension)."""
    from gvshell.extension import load_ipython_extension as load
    load(ip)


def unload_ipython_extension(ip) -> None:
    from gvshell.extension import unload_ipython_extension as unload
    unload(ip)
