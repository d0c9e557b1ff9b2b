"""omniretail benchmarks: ``python -m benchmarks [--quick] [--json]``.

Every figure that has a target is a comparison made in the same run on the same machine, so the
ratios (and, less so, the absolute numbers) can be compared between machines. All load is sent
to servers this package starts on 127.0.0.1, and every load loop is bounded in time and count.

Modules:

* ``runner``: the registry of benchmarks, the command line, the table and the JSON line;
* ``servers``: starting and stopping a served gateway (``omniretail serve``) or the bare
  Litestar baseline (``benchmarks.bare_app``) as separate processes, and reading their RSS;
* ``store``: a throwaway store (config, schema, synthetic catalog, stock, API key);
* ``client``: a small keep-alive HTTP/1.1 client on asyncio streams and closed-loop load;
* ``loadgen``: wrk when ``/usr/bin/wrk`` (or ``wrk`` on PATH) exists, else the Python client;
* ``suites``: the benchmarks themselves (catalog reads, checkout, memory).
"""
