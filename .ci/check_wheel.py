"""Fail when a file git tracks under skipit/ is missing from the built wheel.

Usage: python .ci/check_wheel.py dist/skipit-X-py3-none-any.whl. Every tracked file of the
package (modules and package data alike: the demo model, py.typed, schemas) must ship, so a
file added without its `package-data` pattern fails CI instead of a user's install.
"""

import subprocess
import sys
import zipfile

wheel = sys.argv[1]
# safe.directory: CI runs as root on a clone it may not own; this only lists our own checkout
git = ["git", "-c", "safe.directory=*", "ls-files", "skipit"]
tracked = set(subprocess.run(git, capture_output=True, text=True, check=True).stdout.split())
with zipfile.ZipFile(wheel) as zf:
    shipped = set(zf.namelist())
missing = sorted(tracked - shipped)
if missing:
    sys.exit(f"{wheel} lacks {len(missing)} tracked file(s) (add them to [tool.setuptools.package-data]): "
             + ", ".join(missing))
print(f"{wheel}: all {len(tracked)} tracked files under skipit/ are in the wheel")
