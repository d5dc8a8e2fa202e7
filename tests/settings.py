"""Settings for the test suite: the project's settings with what the tests need.

The project itself starts safe (DEBUG off, no sandbox, no key); the unit tests run the
demo configuration, as ``make run`` does, unless the environment says otherwise (the
settings tests start their own processes with their own environment).
"""

import os

os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("SECRET_KEY", "test-only-key-" + "k" * 50)

from o2o_site.settings import *  # noqa: E402,F401,F403

# The unit tests render pages without running collectstatic (Django's test runner turns
# DEBUG off, so the manifest storage would want the manifest): plain names, served from
# the apps' folders. The e2e suite deploys with the manifest, as production does.
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
