import sys

from phiray.cli import main

sys.exit(main())
