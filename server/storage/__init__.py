"""Every Redis key (keys.py) and every atomic script (scripts.py, lua/*.lua) lives here."""
