"""Settings for the test suite: the project's settings with what the tests need.

The project itself starts safe (DEBUG off, no sandbox, no key); the unit tests run the
demo configuration, as ``make run`` does, unless the environment says otherwise (the
settings tests start their own processes with their own environment).
"""

import os

os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("SECRET_KEY", "test-only-key-" + "k" * 50)

from o2o_site.settings import *  # noqa: E402,F401,F403
