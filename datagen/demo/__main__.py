"""python -m datagen.demo: see cli.py."""
import sys

from .cli import main

sys.exit(main())
