import sys

from datagen.filter.cli import main

sys.exit(main())
