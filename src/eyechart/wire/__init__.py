"""The wire layer: what goes over HTTP and how it is judged byte for byte.

``schemas`` (the contract's JSON Schemas per profile), ``sse`` (the strict event-stream reader),
``exchange`` (one HTTP exchange as evidence, with a curl reproducer) and ``build`` (request builder).
"""
