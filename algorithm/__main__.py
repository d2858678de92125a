import sys

from algorithm.cli import main

sys.exit(main())
