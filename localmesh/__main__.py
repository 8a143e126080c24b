import sys

from localmesh.cli import main

sys.exit(main())
