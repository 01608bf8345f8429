"""`python -m verify.explain --write-docs | --check-docs`: the tutorial page in docs/."""
import sys

from verify.explain.page import main

sys.exit(main())
