"""``python -m training.realism``: the realism study (see ``training.realism.report``)."""

import sys

from training.realism.report import main

if __name__ == "__main__":
    sys.exit(main())
