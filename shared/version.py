from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("sessiond")
except PackageNotFoundError:  # running from a source tree that was never installed
    VERSION = "0+unknown"
