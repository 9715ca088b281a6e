"""db: schema plans, migrations, introspection and the embedded server.

Importing the package installs orjson as psycopg's JSON codec (`json_codec`)."""

from rocketd.db import json_codec

json_codec.install()
