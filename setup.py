"""The one native module: multi-buffer MD5 (src/modelpvc/core/md5_native.py). Everything else is in
pyproject.toml; extensions are declared here because setuptools' pyproject form for them is experimental."""

from setuptools import Extension, setup

setup(ext_modules=[
    # optional: without a C compiler the install goes on, and MD5 is hashlib's, one part at a time
    Extension("modelpvc.core._md5lanes", ["src/modelpvc/core/_md5lanes.c"], extra_compile_args=["-O3"],
              optional=True),
])
