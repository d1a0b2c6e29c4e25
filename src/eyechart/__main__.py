import sys

from eyechart.cli import main

sys.exit(main())
