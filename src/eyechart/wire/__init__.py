"""The wire layer: what goes over HTTP and how it is judged byte for byte.

``schemas`` (the contract's JSON Schemas per profile), ``sse`` (the strict event-stream reader),
``exchange`` (one HTTP exchange as evidence), ``reproducer`` (the curl command that repeats a request,
secrets read from the environment) and ``build`` (request builder).
"""
