import sys

from hosen.cli import main

sys.exit(main())
