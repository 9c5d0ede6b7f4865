from setuptools import setup

# Everything else is in pyproject.toml; cffi_modules has no pyproject spelling.
setup(cffi_modules=["native/build.py:ffibuilder"])
