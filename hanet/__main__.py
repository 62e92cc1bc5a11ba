import sys

from hanet.cli import main

sys.exit(main())
