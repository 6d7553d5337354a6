"""`python -m asr_cli ...` (and `torchrun -m asr_cli train ...`) run the `asr` command."""
import sys

from . import main

sys.exit(main())
