"""voicewire: a real-time voice agent server that streams every stage of a turn."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("voicewire")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
