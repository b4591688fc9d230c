#!/usr/bin/env python
"""Django's command-line utility for Nucleus."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nucleus_project.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:  # a configuration mistake deserves one line, not a traceback
        sys.exit(f"Nucleus is not configured: {exc}")


if __name__ == "__main__":
    main()
