"""Print the path of eyechart's bundled Locust file, for plain Locust on any host (pip installs included).

examples:
  locust -f "$(eyechart locustfile)" --worker --master-host 10.0.0.5    # for eyechart load --expect-workers N
  locust -f "$(eyechart locustfile)" --host http://127.0.0.1:8000/v1/openai --workload ocr-documents  # web UI
"""

from __future__ import annotations

import argparse

from eyechart import bundled


def configure(parser: argparse.ArgumentParser) -> None:
    del parser  # no options: the path is all there is


def run(args: argparse.Namespace) -> int:
    del args
    print(bundled.loadtests_dir() / "locustfile.py")
    return 0
