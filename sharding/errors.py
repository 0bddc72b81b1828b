"""User-facing errors of lightning-wm.

They live in `sharding`, the bottom of the import chain (sharding <- datamodules <-
lightning_wm <- callbacks), so every package can raise them. The CLI prints the message of
any `LwmError` on one line and exits non-zero; the message names the file, key or value and
the fix.
"""


class LwmError(Exception):
    """Base class: a problem with the user's input, not a bug."""


class ConfigError(LwmError):
    """A config key, value or override is wrong."""


class ShardError(LwmError):
    """A shard folder, tar file or manifest is missing, corrupt or of another schema."""


class SourceError(LwmError):
    """A raw data source (synthetic settings, nuScenes, Waymo) cannot be read as asked."""
