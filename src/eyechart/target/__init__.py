"""The embedded reference target: a vision chat API that honours the contract, on a simulated GPU.

``eyechart serve`` runs it; ``launch.start_target`` starts it as a subprocess for tests, ``conform``,
``load`` and ``make demo``. Module map: ``app`` (HTTP routes), ``request`` (auth and validation),
``answer`` (whole and streamed answers), ``state`` (what requests share); the simulated GPU is
``batching`` (admission and step rules, no clock), ``engine`` (those rules on the wall clock),
``deployment`` (step time of a model on a GPU), ``models`` and ``gpus`` (their published figures) and
``capacity`` (the same rules on a virtual clock: the throughput and SLO-limited rate to expect);
``faults`` (fault injection), ``trace`` (server-side ground truth), ``prom`` (Prometheus metrics);
the image pipeline is ``decode``, ``fetch``, ``tokens`` and ``vision``.
"""

# The documented local key: the target accepts it unless --api-key / EYECHART_API_KEY says otherwise.
DEFAULT_API_KEY = "eyechart-local"
