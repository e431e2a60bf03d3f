import sys

from signconsole.cli import main

sys.exit(main())
