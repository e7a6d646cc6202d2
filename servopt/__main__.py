import sys

from servopt.cli import main

sys.exit(main())
