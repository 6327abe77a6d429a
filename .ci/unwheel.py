"""Unpack a wheel keeping the Unix permissions its entries carry (zipfile drops them, and
a PostgreSQL install needs its programs executable): unwheel.py WHEEL DEST."""

import os
import sys
import zipfile

wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as archive:
    for entry in archive.infolist():
        path = archive.extract(entry, dest)
        mode = (entry.external_attr >> 16) & 0o777
        if mode:
            os.chmod(path, mode)
