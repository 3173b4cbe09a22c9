import sys

from oof.report.cli import main

sys.exit(main())
