"""WSGI entry point of the example Django site.

From the repository root::

    python -m fcgigw --bind 127.0.0.1:9000 examples.django_site.mysite.wsgi:application
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PROJECT_DIR = str(Path(__file__).resolve().parent.parent)
if PROJECT_DIR not in sys.path:
    sys.path.insert(0, PROJECT_DIR)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402 (needs the settings above)

application = get_wsgi_application()
