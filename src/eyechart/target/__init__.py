"""The embedded reference target: a vision chat API that honours the contract, on a simulated GPU.

``eyechart serve`` runs it; ``launch.start_target`` starts it as a subprocess for tests, ``conform``,
``load`` and ``make demo``. Module map: ``app`` (HTTP routes), ``request`` (auth and validation),
``answer`` (whole and streamed answers), ``state`` (what requests share), ``engine`` (the simulated
GPU: admission queue and token timing), ``models`` (model profiles: token rule, price, latency),
``faults`` (fault injection), ``trace`` (server-side ground truth), ``prom`` (Prometheus metrics);
the image pipeline is ``decode``, ``fetch``, ``tokens`` and ``vision``.
"""

# The documented local key: the target accepts it unless --api-key / EYECHART_API_KEY says otherwise.
DEFAULT_API_KEY = "eyechart-local"
