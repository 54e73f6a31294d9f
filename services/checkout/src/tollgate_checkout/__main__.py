import sys

from tollgate_shared.service_main import main

from .app import SCHEMA, SPEC, build_app
from .config import Settings

sys.exit(main(SPEC, Settings, build_app, SCHEMA))
