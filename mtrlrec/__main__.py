import sys

from mtrlrec.cli import main

sys.exit(main())
