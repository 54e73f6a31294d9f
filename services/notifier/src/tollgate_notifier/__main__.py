from tollgate_shared.runtime import serve

from .app import build_app
from .config import Settings

settings = Settings()  # type: ignore[call-arg]
serve(build_app(settings), settings)
