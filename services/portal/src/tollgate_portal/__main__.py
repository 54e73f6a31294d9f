import sys

from tollgate_shared.service_main import main

from .app import SCHEMA, SPEC, build_app, consumer_deps
from .config import Settings

sys.exit(main(SPEC, Settings, build_app, SCHEMA, consumer_deps))
