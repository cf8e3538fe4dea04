"""`python -m services.ingest.lead_import upload FILE --list NAME ...` (see cli.py)."""

import sys

from services.ingest.lead_import.cli import main

sys.exit(main())
