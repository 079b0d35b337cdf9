"""How one process serves HTTP fairly and within bounds (docs/operations.md, "How a process serves").

- ``lanes``: the views run on two bounded pools of threads, a light one and an engine one
  (config/asgi.py picks the lane from the view's ``engine_bound``);
- ``batcher``: the engine work of concurrent requests gathered into one engine call, behind a
  bounded queue that refuses (503 ``overloaded`` with Retry-After) rather than let a request wait
  past its limit;
- ``state``: the refusals, the request's state the lanes set, and the process's registry
  (``snapshot``, shown by GET /api/stats/).

Generic: nothing here knows the apps; people/engine.py wires the recognition engine to a Batcher.
"""

from core.serving.batcher import Batcher, Limits
from core.serving.lanes import Lane, Lanes
from core.serving.state import ClientGone, Overloaded, snapshot, with_retry_after

__all__ = ["Batcher", "ClientGone", "Lane", "Lanes", "Limits", "Overloaded", "snapshot", "with_retry_after"]
