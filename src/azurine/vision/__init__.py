"""Images that vision models read: what one counts for in tokens (`tokens.py`), a data URL or downloaded bytes read
and measured (`images.py`), the addresses a download may reach (`addresses.py`) and the download itself
(`fetch.py`)."""
