"""Redaction cost per worker: the collector's once-per-worker static part (arguments and context
data, redacted) for 1000 worker contexts, on the hub's thread, no broker needed.

Three worker shapes, a third each: plain arguments, an entrypoint with ``sensitive_arguments``,
and secret-looking values and nested headers under ordinary names. Prints µs per worker
(median of 7 runs over fresh contexts: the per-worker cache is what makes later refreshes free).

Run with ``.venv/bin/python bench/redaction.py``.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nameko_chassis.probe import collect as collector  # noqa: E402

N = 1000


class Service:
    def plain(self, order_id, items, note="", **kwargs):  # noqa: ANN001, ANN201, ANN003
        pass

    def login(self, username, password, remember=False):  # noqa: ANN001, ANN201
        pass

    def webhook(self, url, headers, body):  # noqa: ANN001, ANN201
        pass


class Container:
    service_cls = Service


class Entrypoint:
    container = Container()

    def __init__(self, method: str, sensitive: tuple[str, ...] = ()) -> None:
        self.method_name = method
        self.sensitive_arguments = sensitive


class Ctx:
    def __init__(self, i: int) -> None:
        self.call_id = f"svc.m.{i:08d}"
        self.call_id_stack = [f"gw.x.{i}", self.call_id]
        kind = i % 3
        if kind == 0:
            self.entrypoint = Entrypoint("plain")
            self.args = (i, [{"sku": "A-1", "qty": 2}, {"sku": "B-7", "qty": 1}])
            self.kwargs = {"note": f"leave at the door of flat {i}", "channel": "web"}
        elif kind == 1:
            self.entrypoint = Entrypoint("login", ("password",))
            self.args = (f"ann{i}", f"hunter{i}")
            self.kwargs = {"remember": True}
        else:
            self.entrypoint = Entrypoint("webhook")
            self.args = (f"https://user:pw{i}@example.com/hook",
                         {"Authorization": f"Bearer abcdefghijklmnop{i}", "Accept": "*/*"})
            self.kwargs = {"body": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"}
        self.data = {"call_id_stack": self.call_id_stack, "user_agent": "curl/8.0",
                     "authorization": "Bearer xyz", "user_id": i, "trace": f"req-{i}-x",
                     "locale": "en-GB"}


def run_once() -> float:
    contexts = [Ctx(i) for i in range(N)]
    opts = collector._options()
    t0 = time.perf_counter()
    for ctx in contexts:
        collector._worker_static(ctx, "svc", opts, 0.0)
    return (time.perf_counter() - t0) / N * 1e6


def main() -> None:
    runs = [run_once() for _ in range(7)]
    print(f"redaction + static part per worker ({N} workers): "
          f"median {statistics.median(runs):.1f} µs, best {min(runs):.1f} µs")


if __name__ == "__main__":
    main()
