"""eyechart's Locust file: vision chat load with exact streaming metrics.

Run it through eyechart (recommended; starts the embedded target without --base-url, gates, reports):

    eyechart load --workload captioning-mixed --users 8 --duration 30s

or with plain Locust, web UI included (API key from the environment, never on the command line):

    EYECHART_API_KEY=sk-... locust -f loadtests/locustfile.py --host http://127.0.0.1:8000/v1/openai \\
        --workload ocr-documents --model my-model

Several processes on one machine: ``--processes N``; several machines: ``eyechart load --expect-workers
N`` (or ``--master`` here) and ``--worker --master-host HOST`` on each load machine, where ``eyechart
locustfile`` prints this file's path (Locust's own distribution; histograms and raw records are merged
on the master). eyechart's options are listed under "eyechart" in ``locust --help``.
This file is the load job's entry point: it wires the job (``eyechart.load``) to its report writer.
"""

from locust import events

from eyechart.load import session
from eyechart.load.user import VisionChatUser
from eyechart.report.load import write_reports

session.install(events, write_reports=write_reports)


class VisionChat(VisionChatUser):
    """Sends the workload's requests; closed loop by default, open loop with --rate."""

    session_getter = staticmethod(session.current_session)
