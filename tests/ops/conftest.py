import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cluster"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "clients", "python"))

# Every test fails when a server it started crashed (see harness).
from harness import no_server_crashed  # noqa: E402,F401
