import sys

from resilient_llm.cli import main

sys.exit(main())
