"""What other apps connect to when a person's data must go.

``person_erasing`` is sent inside the transaction that deletes a person, before the row goes, with
``person`` (the Person). Each receiver erases what its app holds about that person (rows, files
after commit, derived data) and returns a dict of counts, e.g. ``{"negatives": 2}``; the counts of
every receiver go into the erasure's audit record. A receiver that raises rolls the deletion back:
an erasure is whole or not at all."""

from django.dispatch import Signal

person_erasing = Signal()
