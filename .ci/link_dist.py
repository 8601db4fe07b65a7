"""Link an installed distribution from this interpreter's environment into another venv.

Usage: python .ci/link_dist.py torch VENV. `make wheel-check` uses it to put torch (the same
pinned CPU wheel `make install` puts first, 750 MB unpacked) into its fresh venv in a second
instead of unpacking it again; pip then sees torch as installed and installs every other
dependency of the wheel for real, torch's own included.
"""

import importlib.metadata
import os
import sys
import sysconfig

name, venv = sys.argv[1], sys.argv[2]
dist = importlib.metadata.distribution(name)
source = dist.locate_file("")
target = sysconfig.get_path("platlib", vars={"base": venv, "platbase": venv})
tops = sorted({f.parts[0] for f in dist.files if f.parts[0] != ".."})  # scripts under ../bin stay out
for top in tops:
    os.symlink(os.path.join(source, top), os.path.join(target, top))
print(f"linked {name} {dist.version} into {target}: {', '.join(tops)}")
