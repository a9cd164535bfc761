"""`python -m vidclust`: the command line."""
import sys

from vidclust.cli import main

sys.exit(main())
