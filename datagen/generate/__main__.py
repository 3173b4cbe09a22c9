import sys

from datagen.generate.cli import main

sys.exit(main())
