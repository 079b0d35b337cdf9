"""The face index of this process, kept in step with the database through a change log.

``index_cache`` (holder.py) is what every app searches; ``log.py`` is what every write appends to;
``sources.py`` is where the apps that own faces register how a full snapshot is read."""
