"""
Imported by the first entry of every bundle config's ``imports`` list (``"$import monai_wsss.cli"``): installs the
command-line hook of :py:func:`monai_wsss.errors.install_cli_excepthook`, so that a bundle run that stops on bad
input or a bad setting ends with that one message (file, problem, what to do) after the traceback, instead of
MONAI's "Failed to instantiate component". Importing it elsewhere is harmless: exceptions without a
:py:class:`monai_wsss.errors.InputError` in their chain print exactly as before.
"""

import monai_wsss.settings  # noqa: F401  (the configs' initialize calls monai_wsss.settings.check_command_line())
from monai_wsss.errors import install_cli_excepthook

install_cli_excepthook()
